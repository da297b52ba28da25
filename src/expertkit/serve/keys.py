"""API keys for `expertkit serve`: each key names a caller and the access groups it may read.

A key is shown once, when it is made; the store keeps only its SHA-256 (a key is 256 random bits, so a
fast hash is as safe as a slow one, and it lets every request be checked in microseconds, as GitHub's
and Stripe's tokens are). The store is a 0600 JSON file in the workspace, rewritten atomically under a
lock; a running server rereads it when it changes, so a revoked key stops working at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from expertkit.errors import ExpertkitError
from expertkit.private import private_dir

PREFIX = "ek-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass
class KeyRecord:
    name: str
    hash: str  # sha256 of the key, hex
    hint: str  # the key's first characters, to tell keys apart in listings
    groups: list[str]
    created: float
    revoked: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked is None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The keys of one workspace, in ``path`` (``.expertkit/keys.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, KeyRecord] = {}
        self._records: list[KeyRecord] = []

    # -- reading ------------------------------------------------------------------------------------

    def _load(self) -> list[KeyRecord]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise ExpertkitError(f"{self.path} is unreadable ({exc}); restore it from a backup or delete it") from None
        return [KeyRecord(**r) for r in raw.get("keys", [])]

    def _refresh(self) -> None:
        """Reread the file when it changed (a `keys revoke` in another process takes effect at once)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp or stamp is None:
            self._records = self._load()
            self._by_hash = {r.hash: r for r in self._records if r.active}
            self._stamp = stamp

    def records(self) -> list[KeyRecord]:
        self._refresh()
        return list(self._records)

    def configured(self) -> bool:
        """Whether keys were ever made here: from then on a server asks every caller for one, even when
        all are revoked (revoking the last key must not open the server)."""
        self._refresh()
        return bool(self._records)

    def has_keys(self) -> bool:
        """Whether any key is active: a server with none answers only on the loopback interface."""
        self._refresh()
        return bool(self._by_hash)

    def verify(self, key: str) -> KeyRecord | None:
        """The active key's record, or None. Only the key's hash is looked up; the key is never kept."""
        if not key.startswith(PREFIX):
            return None
        self._refresh()
        return self._by_hash.get(key_hash(key))

    # -- writing ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        """The store's records, read under an exclusive lock that other processes writing it wait for."""
        from filelock import FileLock

        private_dir(self.path.parent)
        with FileLock(self.path.with_name(self.path.name + ".lock"), mode=0o600, thread_local=False):
            yield self._load()

    def _save(self, records: list[KeyRecord]) -> None:
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "keys": [asdict(r) for r in records]}, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one

    def add(self, name: str, groups: list[str]) -> tuple[str, KeyRecord]:
        """A new key for ``name`` reading ``groups``: returns the key (shown once) and its record."""
        if not _NAME.match(name):
            raise ExpertkitError(
                f"key name {name!r}: use letters, digits and _.@- (up to 64), e.g. `expertkit keys add alice -g staff`"
            )
        groups = sorted({g.strip() for g in groups if g.strip()})
        if not groups:
            raise ExpertkitError("a key needs at least one access group: --group G (e.g. --group everyone)")
        key = PREFIX + secrets.token_urlsafe(32)
        with self._locked() as records:
            if any(r.name == name and r.active for r in records):
                raise ExpertkitError(f"an active key is already named {name!r}: revoke it first or pick another name")
            record = KeyRecord(name, key_hash(key), key[:10], groups, time.time())
            self._save([*records, record])
        return key, record

    def revoke(self, name: str) -> KeyRecord:
        with self._locked() as records:
            hits = [r for r in records if (r.name == name or r.hint == name) and r.active]
            if not hits:
                raise ExpertkitError(f"no active key named {name!r}: see `expertkit keys list`")
            now = time.time()
            for r in hits:
                r.revoked = now
            self._save(records)
        return hits[0]
