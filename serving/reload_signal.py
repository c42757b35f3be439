"""How the workers of one server tell each other to reload, so that only ``/admin/reload`` can.

The worker that gets an authenticated ``/admin/reload`` loads the models, then writes a
signal into the server's private folder (``<run dir>/server-<server pid>``, mode 0700, owned
by the service's user, never the shared ``$TMPDIR``): a sequence number, the overrides and an
HMAC of both keyed with the admin token. Every other worker polls the signal
(:data:`POLL_SECONDS`) and reloads only when the folder and the file belong to the service's
user, are writable by nobody else, and the HMAC is right: a file written by anyone who does
not hold the admin token is ignored (and logged). Each worker then writes an
acknowledgement; the answering worker waits for them (:meth:`ReloadChannel.wait_acks`), so a
200 from ``/admin/reload`` means every worker serves the new models.

Without an admin token there are no signals at all: nothing can be reloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ReloadChannel", "UnsafeRunDir", "POLL_SECONDS"]

log = logging.getLogger("patron.serving")
POLL_SECONDS = 0.2
SIGNAL = "reload.json"


class UnsafeRunDir(RuntimeError):
    """The run folder is owned by someone else or writable by others."""


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRunDir(f"{path}: not a plain folder")
    if st.st_uid != os.geteuid():
        raise UnsafeRunDir(f"{path}: owned by uid {st.st_uid}, not by this service (uid {os.geteuid()})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: make it private
    return path


def _trusted(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022)


class ReloadChannel:
    """One server's reload signal and acknowledgements (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, server_id: int, token: str | None,
                 workers: int = 1) -> None:
        self.token = token
        self.workers = max(1, int(workers))
        self.dir: Path | None = None
        self.seq = 0
        self.instance = f"{os.getpid()}-{os.urandom(3).hex()}"  # this worker (its acks)
        if token is None:
            return
        base = Path(run_dir)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)  # a folder the user named: left as is
        self.dir = _private_dir(base / f"server-{server_id}")  # ours: private, or refused
        self.seq = self._read_seq()

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    def _mac(self, payload: dict) -> str:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hmac.new(self.token.encode(), text.encode(), hashlib.sha256).hexdigest()

    def _write(self, name: str, data: dict) -> None:
        path = self.dir / name
        tmp = self.dir / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data))
        os.replace(tmp, path)

    def _read(self, name: str) -> dict | None:
        path = self.dir / name
        if not _trusted(path):
            if path.exists():
                log.error("reload signal %s ignored: not owned by this service or writable by others",
                          path)
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _read_seq(self) -> int:
        data = self._verified()
        return int(data["seq"]) if data else 0

    def _verified(self) -> dict | None:
        data = self._read(SIGNAL)
        if not data or not isinstance(data.get("payload"), dict):
            return None
        if not hmac.compare_digest(str(data.get("mac", "")), self._mac(data["payload"])):
            log.error("reload signal in %s ignored: not signed with the admin token", self.dir)
            return None
        return data["payload"]

    # ---- the answering worker -----------------------------------------------------------
    def publish(self, overrides: dict[str, str]) -> int:
        """Signal every other worker to load ``overrides``; returns the signal's number."""
        if not self.enabled:
            return 0
        self.seq = max(self.seq, self._read_seq()) + 1
        payload = {"seq": self.seq, "overrides": overrides, "origin": self.instance, "ts": time.time()}
        self._write(SIGNAL, {"payload": payload, "mac": self._mac(payload)})
        self.ack(self.seq, True)
        return self.seq

    def wait_acks(self, seq: int, timeout: float = 60.0) -> dict:
        """Wait until every worker has loaded signal ``seq`` (or ``timeout``): ``{"expected",
        "ok", "failed", "waiting"}`` (counts of workers)."""
        deadline = time.monotonic() + timeout
        while True:
            acks = self.acks(seq)
            done = len(acks)
            if done >= self.workers or time.monotonic() >= deadline:
                ok = sum(1 for a in acks.values() if a.get("ok"))
                return {"expected": self.workers, "ok": ok, "failed": done - ok,
                        "waiting": max(0, self.workers - done)}
            time.sleep(POLL_SECONDS / 2)

    def acks(self, seq: int) -> dict[str, dict]:
        """Acknowledgements of signal ``seq`` or later, by worker (of live processes only)."""
        out = {}
        for p in self.dir.glob("ack-*.json"):
            data = self._read(p.name)
            if not data or int(data.get("seq", -1)) < seq:
                continue
            try:
                os.kill(int(data.get("pid", 0)), 0)
            except (OSError, ValueError):
                continue  # a worker that has gone
            out[str(data.get("worker"))] = data
        return out

    # ---- every worker -------------------------------------------------------------------
    def ack(self, seq: int, ok: bool) -> None:
        if self.enabled:
            self._write(f"ack-{self.instance}.json",
                        {"seq": seq, "pid": os.getpid(), "worker": self.instance, "ok": ok})

    def watch(self, on_signal: Callable[[dict], bool], interval: float = POLL_SECONDS) -> threading.Thread | None:
        """Poll for signals newer than the last one seen; ``on_signal(overrides) -> ok``."""
        if not self.enabled:
            return None

        def loop() -> None:
            while True:
                time.sleep(interval)
                try:
                    payload = self._verified()
                except Exception as exc:  # keep watching whatever happens to one read
                    log.error("reload signal unreadable: %s", exc)
                    continue
                if not payload or int(payload["seq"]) <= self.seq:
                    continue
                self.seq = int(payload["seq"])
                if payload.get("origin") == self.instance:
                    continue
                log.info("reload signalled by worker %s", payload.get("origin"))
                ok = False
                try:
                    ok = bool(on_signal(dict(payload.get("overrides") or {})))
                finally:
                    self.ack(self.seq, ok)

        t = threading.Thread(target=loop, name="patron-reload-watch", daemon=True)
        t.start()
        return t
