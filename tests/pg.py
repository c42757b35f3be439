"""Test helpers for real servers: a private PostgreSQL database per test, free ports,
process groups that can be killed with SIGKILL.

``PATRON_TEST_POSTGRES_URL`` (``.ci/run`` sets ``postgresql://postgres@127.0.0.1:5432/test``)
names the server. Unset: the tests skip and say why. Set but the server does not answer:
they fail (a CI without its database must not pass silently).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ENV = "PATRON_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def server_url() -> str:
    """The test server's URL, or skip (with the reason printed) when it is not configured."""
    url = os.environ.get(ENV)
    if not url:
        pytest.skip(f"{ENV} is not set: PostgreSQL scale-out tests skipped")
    return url


def with_database(url: str, db: str, **parts: str) -> str:
    """``url`` pointing at database ``db`` (and other parts: ``username=``, ``password=``)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=db, **parts).render_as_string(hide_password=False)


def _admin(url: str):
    import psycopg

    return psycopg.connect(with_database(url, "postgres"), connect_timeout=5, autocommit=True)


@contextmanager
def database(prefix: str = "patron_test") -> Iterator[str]:
    """Create a fresh database on the test server; yield its URL; drop it afterwards."""
    url = server_url()
    try:
        conn = _admin(url)
    except Exception as exc:  # the server is configured but does not answer: FAIL
        pytest.fail(f"{ENV}={url} is set but PostgreSQL does not answer: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield with_database(url, name)
    finally:
        conn = _admin(url)
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(tmp: Path) -> dict[str, str]:
    """Environment for child processes: private homes, no telemetry, this checkout first."""
    env = dict(os.environ)
    env.update({
        "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp / "bentoml"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    })
    return env


class Proc:
    """A child process in its own process group, output to a log file."""

    def __init__(self, cmd: list[str], env: dict, log: Path, cwd: Path = ROOT) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def _tree(self) -> list:
        """This process and its descendants (BentoML/circus workers run in their own
        sessions, so a process-group signal would miss them)."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        """SIGKILL the process and every descendant at once: no clean-up anywhere."""
        for p in self._tree():
            try:
                p.kill()
            except Exception:  # already gone
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        tree = self._tree()
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for p in tree:  # whatever outlived a clean stop (orphaned workers)
            try:
                p.kill()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


def wait_http(url: str, proc: Proc, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers 200 (fail with the process log when it exits or times out)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.proc.returncode}): {proc.logs()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready in {timeout}s: {proc.logs()[-3000:]}")


def mlflow_server(db_url: str, tmp: Path) -> tuple[Proc, str]:
    """``mlflow server`` on PostgreSQL + a local artifact directory, on a free port."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", db_url,
           "--artifacts-destination", str(tmp / "mlartifacts"), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = Proc(cmd, child_env(tmp), tmp / f"mlflow-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, timeout=120)
    except Exception:
        proc.stop()
        raise
    return proc, url
