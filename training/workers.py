"""Several tuning workers on one machine: N ``patron tune`` processes on one shared study.

Each worker is an independent process (``python -m patron.cli tune ... --no-refit
--worker-index I``), exactly what N machines run against one PostgreSQL storage with the
same ``--study``: Optuna's RDB storage hands out the trials, each worker logs its own
nested MLflow run per trial, and a worker killed mid-trial stops beating its trial's
heartbeat, so another worker fails it after the grace period and re-runs its parameters
(:func:`training.tune.run_retries`). Only the supervisor refits, registers and promotes,
once, after every worker has exited.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from features.errors import PatronError

__all__ = ["WorkerExit", "worker_command", "run_workers", "preflight"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerExit:
    """How one worker process ended (``returncode`` < 0: killed by that signal)."""

    index: int
    pid: int
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def worker_command(argv: Sequence[str], index: int) -> list[str]:
    """The command line of worker ``index``: ``patron tune`` with ``argv``, trials only."""
    return [sys.executable, "-m", "patron.cli", "tune", *argv, "--no-refit", "--no-progress",
            "--worker-index", str(index)]


def preflight(storage: str | None, tracking_uri: str | None, experiment: str, study: str,
              models: Sequence[str], settings) -> None:
    """Check storage, studies and tracking store once, before N workers would each fail,
    and create the MLflow experiment so that workers do not race to create it."""
    from training.tracking import setup_mlflow
    from training.tune import check_study, open_storage

    st = open_storage(storage)
    for m in models:
        check_study(st, f"{study}.{m}", settings)
    setup_mlflow(tracking_uri, experiment)


def run_workers(argv: Sequence[str], n: int, env: dict[str, str] | None = None,
                cwd: str | None = None) -> list[WorkerExit]:
    """Start ``n`` workers, wait for all of them; Ctrl-C / SIGTERM stops them too.

    Workers inherit stdout/stderr. Raises :class:`PatronError` when every worker failed
    (they all printed why); a single lost worker is not an error (its trial is retried).
    """
    if n < 1:
        raise PatronError("--workers must be at least 1")
    full = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full["PYTHONPATH"] = os.pathsep.join(p for p in (root, full.get("PYTHONPATH")) if p)
    procs = [subprocess.Popen(worker_command(argv, i), env=full, cwd=cwd) for i in range(n)]
    log.info("started %d tuning workers: pids %s", n, [p.pid for p in procs])

    def stop(signum, _frame) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        exits = [WorkerExit(i, p.pid, p.wait()) for i, p in enumerate(procs)]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
    for e in exits:
        if not e.ok:
            how = (f"killed by signal {-e.returncode}" if e.returncode < 0
                   else f"exit code {e.returncode}")
            log.warning("tuning worker %d (pid %d) ended: %s", e.index, e.pid, how)
    if not any(e.ok for e in exits):
        codes = ", ".join(str(e.returncode) for e in exits)
        raise PatronError(f"all {n} tuning workers failed (exit codes {codes}); see above")
    return exits
