"""The append-only exposure log: one JSON line per served list, on disk before the answer.

Record (docs/ARCHITECTURE.md)::

    {"ts": 1764079000.12, "request_id": "...", "endpoint": "recommend", "experiment": "default",
     "variant": "control", "model_version": "patron/3", "strategy": "personalised",
     "customer_key": "<HMAC-SHA256(secret, customer_id)>", "items": [...]}

Interleaved lists add ``"teams"``: the variant that contributed each item, in order.

Durability: writers hand records to one thread per process that appends everything queued
so far in a single ``write`` (O_APPEND) and ``fsync``\\ s once (group commit); a request is
answered only after its record is on disk. Several worker processes may append to the same
file. The secret for customer keys comes from :mod:`serving.keys` (the environment or an
owner-only key file outside the log's folder, never beside the log), so keys are stable
across workers and restarts and the raw id is never written.

Appends hold a shared ``flock`` on the log; :func:`rewrite_log` (``patron forget``,
``patron purge``) holds the exclusive one while it rewrites the file in place, through a
complete filtered copy first, so a kill at any moment leaves a log that a re-run repairs.
``PATRON_EXPOSURE_ROLL=daily`` writes one file per UTC day (``<stem>-YYYY-MM-DD<suffix>``);
:func:`read_exposures` reads them all when given the base path.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic_core import to_json

from features.errors import PatronError
from serving.keys import SECRET_ENV, KeyRing, customer_key, load_keyring

__all__ = [
    "ExposureLog", "ExposureLogError", "read_exposures", "customer_key", "COLUMNS", "rewrite_log",
    "log_files", "SECRET_ENV",
]

log = logging.getLogger("patron.exposure")
COLUMNS = [
    "ts", "request_id", "endpoint", "experiment", "variant", "model_version", "strategy",
    "customer_key", "items",
]


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

    def __init__(self, path: str | os.PathLike, secret: bytes | None = None,
                 roll: str | None = None) -> None:
        self.base = Path(path)
        self.roll = (roll if roll is not None else os.environ.get("PATRON_EXPOSURE_ROLL", "")).strip().lower()
        if self.roll not in ("", "daily"):
            raise ExposureLogError(f"PATRON_EXPOSURE_ROLL must be daily or empty, not {self.roll!r}")
        self._day = None
        self._open(self._current_path())
        self.keyring = KeyRing([secret], "given") if secret is not None else load_keyring(self.base)
        self.secret = self.keyring.current
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._merge = True  # write_async may join records of one loop turn (subclasses: no)
        self._pending: dict[asyncio.AbstractEventLoop, list] = {}
        self.batches = 0
        self.records = 0
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    def _current_path(self) -> Path:
        if self.roll != "daily":
            return self.base
        self._day = time.strftime("%Y-%m-%d", time.gmtime())
        return self.base.with_name(f"{self.base.stem}-{self._day}{self.base.suffix}")

    def _open(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise ExposureLogError(f"{path}: cannot open exposure log ({exc})") from exc
        if new:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        _repair_tail(self._fd, path)

    def _roll_if_due(self) -> None:
        if self.roll == "daily" and time.strftime("%Y-%m-%d", time.gmtime()) != self._day:
            old = self._fd
            self._open(self._current_path())
            os.close(old)

    def key(self, customer_id) -> str | None:
        """The customer's pseudonymous key with the current secret (cached)."""
        ring = getattr(self, "keyring", None)
        if ring is None:  # subclasses that set only a secret
            ring = self.keyring = KeyRing([self.secret], "given")
        return ring.key(customer_id)

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
                self._roll_if_due()
                fcntl.flock(self._fd, fcntl.LOCK_SH)  # a rewrite (forget, purge) waits for us
                try:
                    view = memoryview(data)
                    while view:
                        n = os.write(self._fd, view)
                        view = view[n:]
                    os.fsync(self._fd)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
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


def log_files(path: str | os.PathLike) -> list[Path]:
    """The files of a log: the path itself and its daily files (``<stem>-YYYY-MM-DD<suffix>``)."""
    p = Path(path)
    rolled = sorted(p.parent.glob(f"{p.stem}-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]{p.suffix}"))
    return ([p] if p.is_file() else []) + rolled


def rewrite_log(path: str | os.PathLike, keep) -> int:
    """Rewrite a JSONL log keeping the records for which ``keep(record)`` is true; returns the
    number of records removed. Holds the exclusive lock (appenders wait); writes the filtered
    copy to ``<log>.rewrite`` first, then over the log in place (writers keep their open file),
    so a kill at any point is repaired by the next call, which finishes from the copy."""
    p = Path(path)
    tmp = p.with_name(p.name + ".rewrite")
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if tmp.exists():  # a rewrite was killed mid-copy: the copy is complete, finish it
            data = tmp.read_bytes()
            removed = 0
        else:
            raw = os.pread(fd, os.fstat(fd).st_size, 0)
            out, removed = [], 0
            for line in raw.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    out.append(line)  # not ours to judge: kept as it is
                    continue
                if keep(rec):
                    out.append(line)
                else:
                    removed += 1
            if not removed:
                return 0
            data = b"".join(x + b"\n" for x in out)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        tmp.unlink()
        return removed
    finally:
        os.close(fd)


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
    files = log_files(p)
    if files and files != [p]:  # daily files: all of them, in order
        frames, torn_all = [], None
        for f in files:
            df, torn = _read_one(f)
            frames.append(df)
            if torn is not None and torn_all is None:
                torn_all = torn
            elif torn is not None:
                torn_all["bad_lines"] += torn["bad_lines"]
        return pd.concat(frames, ignore_index=True), torn_all
    return _read_one(p)


def _read_one(p: Path) -> tuple[pd.DataFrame, dict | None]:
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
