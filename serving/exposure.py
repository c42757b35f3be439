"""The append-only exposure log: one JSON line per served list, on disk before the answer.

Record (docs/ARCHITECTURE.md)::

    {"ts": 1764079000.12, "request_id": "...", "endpoint": "recommend", "experiment": "default",
     "variant": "control", "model_version": "patron/3", "strategy": "personalised",
     "customer_key": "<HMAC-SHA256(secret, customer_id)>", "items": [...]}

Interleaved lists add ``"teams"``: the variant that contributed each item, in order.

Durability: writers hand records to one thread per process that appends everything queued
so far in a single ``write`` (O_APPEND) and ``fsync``\\ s once (group commit); a request is
answered only after its record is on disk. Several worker processes may append to the same
file. The secret for customer keys comes from ``PATRON_EXPOSURE_SECRET``, else from a key
file beside the log (``<log>.key``, created once, mode 0600), so keys are stable across
workers and restarts and the raw id is never written.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic_core import to_json

from features.errors import PatronError

__all__ = [
    "ExposureLog", "ExposureLogError", "read_exposures", "customer_key", "load_secret", "COLUMNS",
]

log = logging.getLogger("patron.exposure")
COLUMNS = [
    "ts", "request_id", "endpoint", "experiment", "variant", "model_version", "strategy",
    "customer_key", "items",
]
SECRET_ENV = "PATRON_EXPOSURE_SECRET"


def drain(q: queue.Queue, first) -> tuple[list, bool]:
    """``first`` plus everything already waiting in ``q`` (one group commit); ``stop`` is
    True when the ``None`` sentinel was among them."""
    batch = [first]
    while True:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            return batch, False
        if nxt is None:
            return batch, True
        batch.append(nxt)


class ExposureLogError(PatronError):
    """The exposure log cannot be written or read."""


def customer_key(secret: bytes, customer_id) -> str | None:
    """Pseudonymous key of a customer id (None for anonymous requests)."""
    if customer_id is None:
        return None
    return hmac.new(secret, str(customer_id).encode(), hashlib.sha256).hexdigest()[:32]


def load_secret(log_path: str | os.PathLike) -> bytes:
    """The HMAC secret: env ``PATRON_EXPOSURE_SECRET``, else ``<log>.key`` (created once)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    key = Path(f"{log_path}.key")
    key.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it right now
            data = key.read_bytes().strip()
            if data:
                return data
            time.sleep(0.02)
        raise ExposureLogError(f"{key}: exposure key file is empty") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
        f.flush()
        os.fsync(f.fileno())
    return key.read_bytes().strip()


def _repair_tail(fd: int, path: Path, chunk: int = 1 << 20) -> None:
    """Cut a torn last line (a crash mid-append), of any length, so new records start on a
    fresh line: read back from the end in ``chunk``-sized steps to the last newline.

    The cut bytes are kept in ``<log>.torn-<ns>`` for inspection.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep, end = 0, size
        while end > 0:
            start = max(0, end - chunk)
            cut = os.pread(fd, end - start, start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        torn_path = Path(f"{path}.torn-{time.time_ns()}")
        with open(torn_path, "wb") as out:  # copied in chunks: a torn tail may be large
            pos = keep
            while pos < size:
                data = os.pread(fd, min(chunk, size - pos), pos)
                out.write(data)
                pos += len(data)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        log.warning("%s: cut a torn last line (%d bytes) left by a crash; kept in %s", path,
                    size - keep, torn_path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class ExposureLog:
    """Append-only JSONL with group commit; ``write``/``write_async`` return once durable."""

    def __init__(self, path: str | os.PathLike, secret: bytes | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise ExposureLogError(f"{self.path}: cannot open exposure log ({exc})") from exc
        if new:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        _repair_tail(self._fd, self.path)
        self.secret = secret if secret is not None else load_secret(self.path)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._merge = True  # write_async may join records of one loop turn (subclasses: no)
        self._pending: dict[asyncio.AbstractEventLoop, list] = {}
        self.batches = 0
        self.records = 0
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    def key(self, customer_id) -> str | None:
        """:func:`customer_key` with this log's secret (the last 100,000 kept: a returning
        customer costs a dict look-up, not an HMAC)."""
        if customer_id is None:
            return None
        try:
            cache = self._keys
        except AttributeError:  # subclasses with their own __init__
            cache = self._keys = {}
        k = (type(customer_id), customer_id)
        out = cache.get(k)
        if out is None:
            if len(cache) >= 100_000:
                cache.clear()
            out = cache[k] = customer_key(self.secret, customer_id)
        return out

    # ---- writer thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch, stop = drain(self._q, first)
            data = b"".join(b for b, _ in batch)
            err: BaseException | None = None
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                os.fsync(self._fd)
                self.batches += 1
                self.records += sum(getattr(done, "n", 1) for _, done in batch)
            except OSError as exc:
                err = ExposureLogError(f"{self.path}: exposure write failed ({exc})")
                log.error("%s", err)
            for _, done in batch:
                done(err)
            if stop:
                return

    @staticmethod
    def encode(record: dict) -> bytes:
        """One JSON line (UTF-8; values JSON cannot hold are written as ``str``)."""
        return to_json(record, fallback=str) + b"\n"

    def _submit(self, record: dict, done: Callable[[BaseException | None], None]) -> None:
        if self._closed:
            raise ExposureLogError(f"{self.path}: exposure log is closed")
        self._q.put((self.encode(record), done))

    def write(self, record: dict, timeout: float = 10.0) -> None:
        """Append one record; returns once it is on disk (raises if it could not be)."""
        ev = threading.Event()
        box: list[BaseException | None] = [None]

        def done(err: BaseException | None) -> None:
            box[0] = err
            ev.set()

        self._submit(record, done)
        if not ev.wait(timeout):
            raise ExposureLogError(f"{self.path}: exposure write timed out")
        if box[0] is not None:
            raise box[0]

    async def write_async(self, record: dict) -> None:
        """Like :meth:`write` without blocking the event loop.

        Records written in the same turn of the event loop (the concurrent requests it is
        serving) are joined and handed to the writer thread as one append, with one
        wake-up of the loop when they are all on disk: one ``fsync`` for all of them."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not getattr(self, "_merge", False):
            def _set(err: BaseException | None) -> None:
                if not fut.done():
                    fut.set_result(None) if err is None else fut.set_exception(err)

            self._submit(record, lambda err: loop.call_soon_threadsafe(_set, err))
            await fut
            return
        if self._closed:
            raise ExposureLogError(f"{self.path}: exposure log is closed")
        data = self.encode(record)
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append((data, fut))
        await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand this loop's pending records to the writer thread as one append."""
        batch = self._pending.pop(loop, [])
        if not batch:
            return
        futs = [f for _, f in batch]

        def _resolve(err: BaseException | None) -> None:
            for f in futs:
                if not f.done():
                    f.set_result(None) if err is None else f.set_exception(err)

        def done(err: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, err)
            except RuntimeError:  # the loop is gone: nobody waits any more
                pass

        done.n = len(batch)  # type: ignore[attr-defined]  # records, for the counter
        if self._closed:
            _resolve(ExposureLogError(f"{self.path}: exposure log is closed"))
            return
        self._q.put((b"".join(d for d, _ in batch), done))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout=10)
        os.close(self._fd)


def read_exposures(path: str | os.PathLike) -> tuple[pd.DataFrame, dict | None]:
    """All complete records of an exposure log, and what could not be read.

    ``torn`` is ``None`` when every line was a record, else ``{"path", "line", "offset",
    "bytes", "text", "bad_lines"}``: the first unreadable line (1-based line number, byte
    offset, length, first 200 chars) and how many lines were skipped. A torn line in the
    middle (a crash before a repair, bytes from a failing disk) is skipped and counted, the
    rest read. A ``postgresql://`` URL reads the exposure table (:mod:`serving.exposure_pg`).
    """
    if str(path).startswith(("postgresql://", "postgres://", "postgresql+")):
        from serving.exposure_pg import read_exposures_pg  # the replicas' shared table

        return read_exposures_pg(str(path))
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ExposureLogError(f"{p}: cannot read exposure log ({exc})") from exc
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    torn = None
    bad = 0
    records = []
    offset = 0

    def note(i: int, line: bytes, at: int) -> None:
        nonlocal torn, bad
        bad += 1
        if torn is None:
            torn = {"path": str(p), "line": i, "offset": at, "bytes": len(line),
                    "text": line[:200].decode("utf-8", "replace")}

    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                records.append(rec)
            except ValueError:
                note(i, line, offset)
        offset += len(line) + 1
    if tail:
        note(len(lines) + 1, tail, offset)
    if torn is not None:
        torn["bad_lines"] = bad
        log.warning("%s: %d unreadable line(s) skipped, the first at line %d", p, bad, torn["line"])
    df = pd.DataFrame.from_records(records)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    if len(df):
        df["ts"] = df["ts"].astype(float)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra], torn
