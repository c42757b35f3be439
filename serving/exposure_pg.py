"""The exposure log in PostgreSQL: one table shared by every serving replica.

``PATRON_EXPOSURE_URL=postgresql://user@host/db`` makes the service write its exposure
records (the same fields as the JSONL log, see :mod:`serving.exposure`) into the table
``patron_exposures`` there instead of a file, so replicas behind a load balancer keep one
log. Acknowledged means stored: each process has one writer thread that inserts every
record queued so far and COMMITs once (group commit); a request is answered only after
the COMMIT that holds its record returned. A record whose COMMIT failed is answered 503.

Customer keys use ``PATRON_EXPOSURE_SECRET``, else a secret kept in the database
(``patron_exposure_secret``, created once), so every replica hashes a customer alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
import time

import pandas as pd

from serving.exposure import COLUMNS, SECRET_ENV, ExposureLog, ExposureLogError, drain
from serving.keys import OLD_ENV, KeyRing

__all__ = ["PgExposureLog", "read_exposures_pg", "is_database_url", "TABLE", "pg_keyring",
           "delete_where_pg"]

log = logging.getLogger("patron.exposure")
TABLE = "patron_exposures"
_FIELDS = [c for c in COLUMNS if c != "items"]
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id            bigserial PRIMARY KEY,
    ts            double precision NOT NULL,
    request_id    text NOT NULL,
    endpoint      text,
    experiment    text,
    variant       text,
    model_version text,
    strategy      text,
    customer_key  text,
    items         jsonb NOT NULL,
    teams         jsonb,
    replica       text,
    stored_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts);
CREATE INDEX IF NOT EXISTS {TABLE}_request ON {TABLE} (request_id);
CREATE TABLE IF NOT EXISTS patron_exposure_secret (
    id int PRIMARY KEY CHECK (id = 1),
    secret text NOT NULL
);
"""
_INSERT = (f"INSERT INTO {TABLE} (ts, request_id, endpoint, experiment, variant, model_version, "
           "strategy, customer_key, items, teams, replica) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)")
REPLICA = f"{socket.gethostname()}:{os.getpid()}"


def is_database_url(url: str | os.PathLike | None) -> bool:
    return str(url or "").startswith(("postgresql://", "postgres://", "postgresql+"))


def _libpq(url: str) -> str:
    """``postgresql+psycopg://`` (SQLAlchemy style) -> ``postgresql://`` (libpq)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def mask(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _connect(url: str):
    import psycopg

    try:
        return psycopg.connect(_libpq(url), connect_timeout=5)
    except Exception as exc:  # OperationalError: unreachable, bad credentials, no database
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExposureLogError(f"cannot reach exposure database {mask(url)} ({msg})") from exc


def _setup(conn) -> bytes:
    """Create the tables (once, under an advisory lock) and return the shared secret."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(7268317)")  # replicas starting together
        cur.execute(_DDL)
        cur.execute("INSERT INTO patron_exposure_secret (id, secret) VALUES (1, %s) "
                    "ON CONFLICT (id) DO NOTHING", (secrets.token_hex(32),))
        cur.execute("SELECT secret FROM patron_exposure_secret WHERE id = 1")
        secret = cur.fetchone()[0]
    conn.commit()
    return secret.encode()


class PgExposureLog(ExposureLog):
    """:class:`serving.exposure.ExposureLog` with a PostgreSQL table instead of a file:
    same ``key``/``write``/``write_async``/``close``; returns once COMMITted."""

    def __init__(self, url: str, secret: bytes | None = None) -> None:
        self.url = url
        self.path = mask(url)  # shown in errors
        self._conn = _connect(url)
        try:
            stored = _setup(self._conn)
        except Exception as exc:
            self._conn.close()
            msg = " ".join(str(exc).split())[:200]
            raise ExposureLogError(f"{self.path}: cannot create the exposure table ({msg})") from exc
        env = os.environ.get(SECRET_ENV)
        self.secret = secret if secret is not None else (env.encode() if env else stored)
        self.keyring = KeyRing([self.secret, *_old_secrets()], "postgres")
        import queue

        self._q = queue.SimpleQueue()
        self._closed = False
        self.batches = 0
        self.records = 0
        self._thread = threading.Thread(target=self._run, name="exposure-pg-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def encode(record: dict) -> tuple:  # type: ignore[override]
        teams = record.get("teams")
        return (
            float(record["ts"]), *(record.get(c) for c in _FIELDS[1:]),
            json.dumps(record.get("items", []), default=str),
            None if teams is None else json.dumps(teams, default=str), REPLICA,
        )

    def _insert(self, rows: list[tuple]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self.url)
        try:
            with self._conn.cursor() as cur:
                cur.executemany(_INSERT, rows)
            self._conn.commit()
        except Exception:
            try:  # the outcome of a failed COMMIT is unknown: never retry it (no duplicates)
                self._conn.close()
            finally:
                self._conn = None
            raise

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch, stop = drain(self._q, first)
            err: BaseException | None = None
            try:
                self._insert([row for row, _ in batch])
                self.batches += 1
                self.records += len(batch)
            except Exception as exc:  # psycopg errors, lost connection
                msg = " ".join(str(exc).split())[:200] or type(exc).__name__
                err = ExposureLogError(f"{self.path}: exposure insert failed ({msg})")
                log.error("%s", err)
                time.sleep(0.05)  # do not spin on a database that is down
            for _, done in batch:
                done(err)
            if stop:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()


def _old_secrets() -> list[bytes]:
    return [s.strip().encode() for s in os.environ.get(OLD_ENV, "").split(",") if s.strip()]


def pg_keyring(url: str) -> KeyRing:
    """The secrets that key the table's records: the environment's, else the database's,
    plus the old ones still to match."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return KeyRing([env.encode(), *_old_secrets()], "env")
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('patron_exposure_secret')")
            if cur.fetchone()[0] is None:
                return KeyRing([b"-"], "none")  # no table yet: nothing was ever keyed
            cur.execute("SELECT secret FROM patron_exposure_secret WHERE id = 1")
            row = cur.fetchone()
    finally:
        conn.close()
    return KeyRing([row[0].encode() if row else b"-", *_old_secrets()], "postgres")


def delete_where_pg(url: str, keys: set[str] | None = None, before_ts: float | None = None) -> int:
    """Delete the table's records of these customer keys, or older than ``before_ts``; returns
    how many (one transaction)."""
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (TABLE,))
            if cur.fetchone()[0] is None:
                return 0
            if keys is not None:
                cur.execute(f"DELETE FROM {TABLE} WHERE customer_key = ANY(%s)", (sorted(keys),))
            else:
                cur.execute(f"DELETE FROM {TABLE} WHERE ts < %s", (float(before_ts),))
            n = cur.rowcount
        conn.commit()
        return n
    finally:
        conn.close()


def read_exposures_pg(url: str, since: float | None = None) -> tuple[pd.DataFrame, None]:
    """The exposure table as :func:`serving.exposure.read_exposures` returns a file log:
    ``(DataFrame[COLUMNS (+ teams, replica)], None)`` in insertion order."""
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (TABLE,))
            if cur.fetchone()[0] is None:
                raise ExposureLogError(f"{mask(url)}: no exposure table {TABLE!r} there")
            where = "" if since is None else " WHERE ts >= %s"
            cur.execute(f"SELECT {', '.join(COLUMNS)}, teams, replica FROM {TABLE}{where} "
                        "ORDER BY id", () if since is None else (since,))
            rows = cur.fetchall()
    finally:
        conn.close()
    df = pd.DataFrame(rows, columns=[*COLUMNS, "teams", "replica"])
    if len(df):
        df["ts"] = df["ts"].astype(float)
    if df["teams"].isna().all():
        df = df.drop(columns="teams")
    return df, None
