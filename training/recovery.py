"""Recovery of the tracking store after a process was killed (``kill -9``, a lost machine).

- Every run Patron starts carries the process that owns it (:func:`process_tags`:
  ``patron.host``, ``patron.pid``, ``patron.pid_started``). A run still ``RUNNING`` whose
  process is gone (or whose pid now belongs to another process) is marked ``FAILED`` with the
  tag ``patron.recovered`` by :func:`fail_dead_runs`; ``patron tune``, ``patron train`` and
  ``patron doctor`` call it when they start. Runs owned by another host are left alone (they
  are reported: only that host can tell).
- A registered version without a promotion decision (registered just before a kill) is
  tagged ``patron.promote.decision=undecided`` with the reason, by :func:`tag_undecided`
  (called by every promotion and by ``patron doctor``), so it is never mistaken for a
  rejected or an accepted candidate; ``patron promote --version N`` decides it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["process_tags", "fail_dead_runs", "tag_undecided", "DECISION_TAG"]

log = logging.getLogger(__name__)
DECISION_TAG = "patron.promote.decision"
HOST = socket.gethostname()


def _started(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # no such process, or no psutil
        return None


def process_tags() -> dict[str, str]:
    """Tags naming this process, for every run it starts."""
    return {"patron.host": HOST, "patron.pid": str(os.getpid()),
            "patron.pid_started": str(_started(os.getpid()))}


def _alive(pid: int, started: str | None) -> bool:
    now = _started(pid)
    if now is None:
        return False
    return started in (None, "", "None") or abs(now - float(started)) < 1.0


def fail_dead_runs(client, experiment_ids: list[str] | None = None) -> dict[str, int]:
    """Mark RUNNING runs of dead processes on this host FAILED; returns counts
    ``{"failed", "other_host", "untagged"}`` of the RUNNING runs found."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    counts = {"failed": 0, "other_host": 0, "untagged": 0}
    if not experiment_ids:
        return counts
    runs = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'",
                              max_results=10_000)
    for run in runs:
        tags = run.data.tags
        host, pid = tags.get("patron.host"), tags.get("patron.pid")
        if not host or not pid:
            counts["untagged"] += 1
            continue
        if host != HOST:
            counts["other_host"] += 1
            continue
        if _alive(int(pid), tags.get("patron.pid_started")):
            continue
        client.set_tag(run.info.run_id, "patron.recovered",
                       f"process {pid} on {host} ended without closing this run; marked FAILED "
                       f"at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        client.set_terminated(run.info.run_id, status="FAILED")
        counts["failed"] += 1
    if counts["failed"]:
        log.warning("marked %d run(s) of killed processes FAILED", counts["failed"])
    return counts


def tag_undecided(client, name: str, skip: set[str] | None = None) -> list[str]:
    """Tag versions of ``name`` that have no promotion decision (except ``skip``) as
    ``undecided``; returns their version numbers."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    out = []
    for mv in versions:
        if str(mv.version) in (skip or set()) or DECISION_TAG in (mv.tags or {}):
            continue
        client.set_model_version_tag(name, mv.version, DECISION_TAG, "undecided")
        client.set_model_version_tag(
            name, mv.version, "patron.promote.reason",
            "registered by a process that stopped before the promotion guard ran; decide it "
            f"with: patron promote --name {name} --version {mv.version}")
        out.append(str(mv.version))
    if out:
        log.warning("%s: version(s) %s had no promotion decision: tagged undecided", name, out)
    return out
