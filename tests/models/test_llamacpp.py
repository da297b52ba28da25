"""The optional llama.cpp generator: runs when llama-cpp-python is installed (pip install 'expertkit[llamacpp]',
a source build of several minutes), skipped with the reason otherwise."""

import pytest

from expertkit.errors import ModelNotInstalledError
from expertkit.models.generator import LlamaCppGenerator

try:
    import llama_cpp  # noqa: F401

    HAVE_LLAMA = True
except ImportError:
    HAVE_LLAMA = False


@pytest.mark.skipif(HAVE_LLAMA, reason="llama-cpp-python is installed; the missing-package path cannot be seen")
def test_missing_llama_cpp_says_how_to_install():
    with pytest.raises(ModelNotInstalledError, match=r"pip install 'expertkit\[llamacpp\]'"):
        LlamaCppGenerator()


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed: pip install 'expertkit[llamacpp]'")
def test_llama_cpp_generates_from_the_shipped_gguf():
    g = LlamaCppGenerator()
    pieces = []
    gen = g.generate([{"role": "user", "content": "What is the capital of France?"}], 16, on_token=pieces.append)
    assert "Paris" in gen.text and "".join(pieces).strip() == gen.text and gen.completion_tokens > 0
