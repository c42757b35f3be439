"""The secrets behind pseudonymous customer keys, kept away from the logs they key.

An exposure (or event) record never holds a raw customer id, only ``customer_key`` =
HMAC-SHA256(secret, id) cut to 32 hex characters. The key is only as private as its secret:
customer ids are often small integers, so whoever holds the secret and a log can recover the
ids by trying them all. The secret therefore never lies beside the log:

- ``PATRON_EXPOSURE_SECRET`` (the current secret) and ``PATRON_EXPOSURE_OLD_SECRETS``
  (comma-separated, still matched by ``patron forget``) from the environment; else
- a key file outside the log's folder, owner-only (``PATRON_KEY_FILE``, default
  ``~/.config/patron/exposure.keys``, mode 0600 in a 0700 folder): one secret per line,
  the current one first; ``patron keys rotate`` puts a new one in front; else
- for the PostgreSQL exposure table, the database's own key table.

A key file an older Patron wrote beside a log (``<log>.key``) is moved into the key file on
first use (the same secret, so keys stay stable) and deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from features.errors import PatronError

__all__ = ["KeyRing", "KeyFileError", "customer_key", "load_keyring", "key_file", "rotate"]

log = logging.getLogger("patron.keys")
SECRET_ENV = "PATRON_EXPOSURE_SECRET"
OLD_ENV = "PATRON_EXPOSURE_OLD_SECRETS"
FILE_ENV = "PATRON_KEY_FILE"


class KeyFileError(PatronError):
    """A key file that is missing, unsafe or unreadable."""


def customer_key(secret: bytes, customer_id) -> str | None:
    """Pseudonymous key of a customer id (None for anonymous requests)."""
    if customer_id is None:
        return None
    return hmac.new(secret, str(customer_id).encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class KeyRing:
    """The current secret (keys new records) and older ones (still matched)."""

    secrets: list[bytes]
    source: str = "env"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def current(self) -> bytes:
        return self.secrets[0]

    def key(self, customer_id) -> str | None:
        """The key of a customer with the current secret (cached: a returning customer costs a
        dictionary look-up, not an HMAC)."""
        if customer_id is None:
            return None
        k = (type(customer_id), customer_id)
        out = self._cache.get(k)
        if out is None:
            if len(self._cache) >= 100_000:
                self._cache.clear()
            out = self._cache[k] = customer_key(self.current, customer_id)
        return out

    def all_keys(self, customer_id) -> set[str]:
        """The customer's key under every secret of the ring (for ``forget``)."""
        return {customer_key(s, customer_id) for s in self.secrets}


def key_file() -> Path:
    env = os.environ.get(FILE_ENV)
    return Path(env) if env else Path.home() / ".config" / "patron" / "exposure.keys"


def _read_file(path: Path) -> list[bytes]:
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise KeyFileError(f"{path}: key file must belong to this user and be readable by no one "
                        f"else (mode {oct(stat.S_IMODE(st.st_mode))}; chmod 600 it)")
    return [ln.strip().encode() for ln in path.read_text().splitlines() if ln.strip()]


def _write_file(path: Path, keys: list[bytes]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(k.decode() for k in keys) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_keyring(log_path: str | os.PathLike | None = None, create: bool = True) -> KeyRing:
    """The key ring for a log (see the module docstring for where secrets come from)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        old = [s.strip().encode() for s in os.environ.get(OLD_ENV, "").split(",") if s.strip()]
        return KeyRing([env.encode(), *old], "env")
    path = key_file()
    legacy = Path(f"{log_path}.key") if log_path else None
    keys: list[bytes] = []
    if path.exists():
        keys = _read_file(path)
    if legacy is not None and legacy.is_file():
        old = legacy.read_bytes().strip()
        if old and old not in keys:
            keys = [old, *keys] if not keys else [*keys, old]
            _write_file(path, keys)
        legacy.unlink()
        log.warning("moved the exposure key beside %s into %s (a key must not lie beside its log)",
                    log_path, path)
    if not keys:
        if not create:
            raise KeyFileError(f"no exposure key: set {SECRET_ENV} or create {path} "
                            "(patron keys rotate)")
        keys = [secrets.token_hex(32).encode()]
        _write_file(path, keys)
    return KeyRing(keys, str(path))


def rotate() -> Path:
    """Put a new current secret in front of the key file's (older ones are kept for matching)."""
    path = key_file()
    keys = _read_file(path) if path.exists() else []
    _write_file(path, [secrets.token_hex(32).encode(), *keys])
    return path


def weak_id_warning(ids) -> str | None:
    """A warning when ids are so few or so small that their keys are easy to reverse by
    anyone who gets the secret."""
    import numpy as np

    arr = np.asarray(ids)
    if arr.dtype.kind in "iu" and len(arr) and int(np.abs(arr).max()) < 10**9:
        return (f"customer ids are integers below {int(np.abs(arr).max()) + 1:,}: anyone who holds "
                "the exposure secret can recover them from the logs by trying every number; keep "
                f"the secret ({SECRET_ENV} or the key file) away from the logs and their readers")
    if len(arr) and len(arr) < 1_000_000 and arr.dtype.kind not in "iu":
        lengths = {len(str(x)) for x in arr[:1000]}
        if max(lengths, default=99) <= 6:
            return ("customer ids are short: their keys are easy to reverse with the exposure "
                    "secret; keep it away from the logs")
    return None
