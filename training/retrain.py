"""``patron retrain``: the champion's configuration (or a new one) on the newest data.

1. Take a lock (``<project>/.patron/retrain.lock``): one retrain at a time; a killed one
   frees it (the operating system drops the lock with the process).
2. Read the champion: its model and flat params travel in its artifact's metadata.
3. Split the newest data in time (the last ``holdout_days`` are the test period).
4. Candidate: the champion's configuration (a refresh), ``--tune`` (a new study over the
   newest data) or ``--model``/``--params``. Score the candidate, the champion's
   configuration and the baselines on that one split.
5. Decide: a candidate that does not beat the best baseline is **refused**; one that scores
   below the champion's configuration is **kept out** (the champion stays); otherwise the
   candidate is refit on all the data, registered, promoted through the guard and running
   services are told to reload (``--notify URL``, ``/admin/reload`` with
   ``$PATRON_ADMIN_TOKEN``).

Nothing reaches the registry before the last step; a kill leaves the champion as it was.
Exit codes (:data:`EXIT`): 0 promoted, 3 kept (the champion is better), 4 refused (not
better than a baseline), 5 promoted but a service did not reload, 2 bad input.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import PatronError
from training.models.base import TrainingOptions
from training.pipeline import data_description, parse_metric, split_id, train_model
from training.release import Evidence, baseline_evidence, baselines_on, evidence_key, release
from training.split import split_global_time

__all__ = ["RetrainResult", "retrain", "EXIT", "RetrainLock", "champion_config", "decide"]

log = logging.getLogger(__name__)
EXIT = {"promoted": 0, "kept": 3, "refused": 4, "notify_failed": 5}


class RetrainLock:
    """An exclusive, non-blocking lock file; released on exit or when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> RetrainLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise PatronError(f"another patron retrain is running (pid {holder}, lock "
                              f"{self.path}); try again when it has finished") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def champion_config(name: str, tracking_uri: str) -> tuple[str, str, dict[str, Any]]:
    """``(version, model name, flat params)`` of the champion, read from its artifact."""
    from features.artifact import load_artifact
    from features.model_store import ModelLoadError, fetch_registered

    try:
        path, info = fetch_registered(f"models:/{name}@champion")
    except ModelLoadError as exc:
        raise PatronError(f"no champion to retrain: {exc} (register one with patron tune "
                          "--register or patron train --register)") from exc
    art = load_artifact(path)
    params = art.metadata.get("flat_params")
    if params is None:
        raise PatronError(f"champion {info.get('version')}: its artifact does not record its "
                          "parameters (train it again with this Patron)")
    return info["registry_version"], art.model_name, dict(params)


def decide(candidate: float, champion: float | None, baseline: float | None,
           same_config: bool) -> str:
    """promoted | kept | refused, from the three scores on one split."""
    if baseline is not None and not candidate > baseline:
        return "refused"
    if champion is not None and not same_config and candidate < champion:
        return "kept"
    return "promoted"


@dataclass
class RetrainResult:
    decision: str
    reason: str
    candidate: tuple[str, dict]
    scores: dict[str, float | None]
    registered: tuple[str, str] | None = None
    promotion: Any = None
    notified: list[dict] | None = None

    @property
    def exit_code(self) -> int:
        if self.decision == "promoted" and self.notified and any(not n["ok"] for n in self.notified):
            return EXIT["notify_failed"]
        if self.decision == "promoted" and self.promotion is not None and not self.promotion.moved:
            return EXIT["kept"]
        return EXIT[self.decision]


def _notify(urls: list[str]) -> list[dict]:
    import httpx

    token = (os.environ.get("PATRON_ADMIN_TOKEN") or "").strip()
    out = []
    for url in urls:
        try:
            r = httpx.post(url.rstrip("/") + "/admin/reload", json={}, timeout=120,
                           headers={"authorization": f"Bearer {token}"})
            out.append({"url": url, "ok": r.status_code == 200, "status": r.status_code,
                        "detail": r.text[:300]})
        except httpx.HTTPError as exc:
            out.append({"url": url, "ok": False, "status": None, "detail": str(exc)[:300]})
    return out


def retrain(
    purchases: pd.DataFrame,
    *,
    name: str = "patron",
    model: str | None = None,
    params: dict[str, Any] | None = None,
    tune_settings=None,
    holdout_days: int = 28,
    metric: str = "ndcg@10",
    mode: str = "new",
    tracking_uri: str | None = None,
    experiment: str = "patron",
    source: str | None = None,
    notify: list[str] | None = None,
    options: TrainingOptions | None = None,
    say=print,
) -> RetrainResult:
    """See the module docstring."""
    import mlflow

    from features.project import project_dir
    from training.recovery import process_tags
    from training.tracking import setup_mlflow

    metric_name, k = parse_metric(metric)
    uri, exp_id = setup_mlflow(tracking_uri, experiment)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the champion is read from this same store
    db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    lock_dir = Path(db).parent if db else project_dir(create=True)
    with RetrainLock(lock_dir / "retrain.lock"):
        champ_version, champ_model, champ_params = champion_config(name, uri)
        say(f"champion: {name} version {champ_version} ({champ_model} {json.dumps(champ_params)})")
        split = split_global_time(purchases, holdout_days=holdout_days, min_customers=1)
        data_desc = data_description(purchases, source)
        sid = split_id(data_desc, split.description)
        ks = (k,)
        if tune_settings is not None:
            from training.tune import tune

            res = tune(purchases, tune_settings, tracking_uri=uri, experiment=experiment,
                       source=source)
            if res.best is None:
                raise PatronError("tuning found no configuration (every trial failed)")
            cand_model, cand_params = res.best.model, dict(res.best.best_params)
        elif model is not None:
            cand_model, cand_params = model, dict(params or {})
        else:
            cand_model, cand_params = champ_model, champ_params
        same = cand_model == champ_model and cand_params == champ_params
        key = evidence_key(metric, mode)
        say(f"scoring on the last {holdout_days} days ({split.description.get('cutoff')} on): "
            f"candidate {cand_model}" + ("" if same else f", champion's {champ_model}") + ", baselines")
        cand = train_model(split.train, cand_model, cand_params, split.test, ks, options,
                           extras=False)
        champ = cand if same else train_model(split.train, champ_model, champ_params, split.test,
                                              ks, options, extras=False)
        base = baseline_evidence(baselines_on(split.train, split.test, ks))
        cv, hv = cand.flat_metrics().get(key), champ.flat_metrics().get(key)
        bname, bv = base.get(key, (None, None))
        scores = {"candidate": cv, "champion": hv, "baseline": bv}
        if cv is None:
            raise PatronError(f"the candidate has no {key} on this split (no test customer "
                              "with a purchase to find?)")
        decision = decide(cv, hv, bv, same)
        say(f"{key}: candidate {cv:.4f}, champion's configuration {hv:.4f}, best baseline "
            f"{bname} {bv:.4f} -> {decision}")
        out = RetrainResult(decision, "", (cand_model, cand_params), scores)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"retrain-{name}",
                              tags={**process_tags(), "patron.kind": "retrain",
                                    "patron.split_id": sid, "patron.decision": decision}) as run:
            mlflow.log_metrics({f"retrain.{n}": v for n, v in scores.items() if v is not None})
            if decision == "refused":
                out.reason = (f"candidate {cv:.4f} does not beat the best baseline {bname} "
                              f"{bv:.4f}: nothing registered, the champion stays")
                return out
            if decision == "kept":
                out.reason = (f"candidate {cv:.4f} scores below the champion's configuration "
                              f"{hv:.4f}: nothing registered, the champion stays")
                return out
            evidence = Evidence(sid, split.description, cand.flat_metrics(), base, run.info.run_id)
            rel = release(purchases, cand_model, cand_params, evidence, refit_on="all",
                          register=name, metric=metric, mode=mode, tracking_uri=uri,
                          source=source, options=options, champion_value=hv,
                          tags={"patron.retrain_of": champ_version}, say=say)
        out.registered, out.promotion = rel.registered, rel.promotion
        out.reason = rel.promotion.reason if rel.promotion is not None else "registered"
        if rel.promotion is not None and not rel.promotion.moved:
            out.decision = "kept"
        if notify and out.decision == "promoted":
            out.notified = _notify(notify)
        return out
