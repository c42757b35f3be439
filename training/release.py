"""From a chosen configuration to a served champion: evidence, refit, register, promote.

One path for ``patron tune``, ``patron train`` and ``patron retrain``:

1. **evidence**: the configuration fit on the training part of a temporal split and scored
   on its test part, beside the baselines scored on the same split (:class:`Evidence`);
2. **refit** on every purchase (``refit_on="all"``, the default), so the served model knows
   the last weeks too; ``refit_on="train"`` registers the evaluated model itself;
3. **register** the model as a pyfunc version whose run carries the evidence (``test.*``
   metrics, the split id, the best baseline per mode and metric as
   ``patron.baseline.<key>`` tags) and both fits (``patron.evidence_run_id``,
   ``patron.fit``, ``patron.fit_span``);
4. **promote** through the guard (:func:`training.registry.promote`): the candidate must
   beat the champion on the same split and the best baseline.

Nothing reaches the registry before the refit succeeded; a process killed between register
and promote leaves a version that the next promotion tags ``undecided``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.models.base import TrainingOptions
from training.pipeline import TrainResult, data_description, train_model
from training.tracking import metric_key

__all__ = ["Evidence", "ReleaseResult", "baseline_evidence", "release", "BASELINES"]

log = logging.getLogger(__name__)
BASELINES = ("popularity", "recent_popularity", "repeat_buy")


@dataclass
class Evidence:
    """A configuration's test metrics on one split, with the baselines' on the same split."""

    split_id: str
    split: dict
    metrics: dict[str, float]  # {"test.new.ndcg_at_10": v, ...}
    baselines: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (model, value)
    run_id: str | None = None  # the run that holds the evaluated (train-part) fit

    def tags(self) -> dict[str, str]:
        out = {"patron.split_id": self.split_id,
               **{f"patron.{k}": f"{v:.6g}" for k, v in self.metrics.items()}}
        for key, (model, value) in self.baselines.items():
            out[f"patron.baseline.{key}"] = f"{value:.6g}"
            out[f"patron.baseline_model.{key}"] = model
        if self.run_id:
            out["patron.evidence_run_id"] = self.run_id
        return out


def baseline_evidence(results: dict[str, TrainResult]) -> dict[str, tuple[str, float]]:
    """The best baseline per ``test.<mode>.<metric>`` key among fit baselines."""
    best: dict[str, tuple[str, float]] = {}
    for name, res in results.items():
        for key, value in res.flat_metrics().items():
            if np.isfinite(value) and (key not in best or value > best[key][1]):
                best[key] = (name, float(value))
    return best


def baselines_on(train: pd.DataFrame, test: pd.DataFrame, ks: tuple[int, ...],
                 names: tuple[str, ...] = BASELINES) -> dict[str, TrainResult]:
    return {b: train_model(train, b, {}, test, ks, extras=False) for b in names}


@dataclass
class ReleaseResult:
    model: str
    params: dict[str, Any]
    result: TrainResult  # the fit that was registered
    run_id: str | None = None
    registered: tuple[str, str] | None = None
    promotion: Any = None
    path: Path | None = None


def release(
    purchases: pd.DataFrame,
    model: str,
    params: dict[str, Any],
    evidence: Evidence,
    *,
    evaluated: TrainResult | None = None,
    refit_on: str = "all",
    register: str | None = None,
    promote_registered: bool = True,
    metric: str = "ndcg@10",
    mode: str = "new",
    tracking_uri: str | None = None,
    source: str | None = None,
    options: TrainingOptions | None = None,
    out_dir: str | Path | None = None,
    tags: dict[str, str] | None = None,
    champion_value: float | None = None,
    force: bool = False,
    say=print,
) -> ReleaseResult:
    """Refit (``refit_on="all"``) or take ``evaluated``, save, log as pyfunc in its own run
    (nested in the active one, if any) and optionally register and promote."""
    import mlflow

    from training.recovery import process_tags
    from training.registry import log_patron_model, promote

    if refit_on not in ("all", "train"):
        raise ValueError(f"refit_on must be all or train, not {refit_on!r}")
    data_desc = data_description(purchases, source)
    if refit_on == "all" or evaluated is None:
        say(f"refitting {model} on all {len(purchases):,} purchases "
            f"({data_desc['span'][0][:10]} .. {data_desc['span'][1][:10]}) ...")
        final = train_model(purchases, model, params, None, options=options, metadata={
            "data": data_desc, "fit": "all", "split_id": evidence.split_id,
            "evaluation": {"split": evidence.split, "split_id": evidence.split_id,
                           "test_metrics": evidence.metrics, "run_id": evidence.run_id}})
        say(f"refit done in {final.fit_seconds:.1f} s")
    else:
        final = evaluated
    fit = "all" if final is not evaluated else "train"
    span = final.metadata.get("data", {}).get("span") or data_desc["span"]
    all_tags = {**evidence.tags(), "patron.model": model, "patron.fit": fit,
                "patron.fit_span": f"{span[0]} .. {span[1]}", **(tags or {})}
    tmp = Path(tempfile.mkdtemp(prefix="patron-release-"))
    path = Path(out_dir) if out_dir else tmp / "patron_model"
    final.model.save(path)
    out = ReleaseResult(model, dict(params), final, path=path)
    with mlflow.start_run(run_name=f"release-{model}", nested=mlflow.active_run() is not None,
                          tags={**process_tags(), "patron.kind": "release", **all_tags}) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in {"model": model, **final.model.config.to_params(),
                                                         **params}.items()})
        mlflow.log_metrics({**evidence.metrics, "fit_seconds": final.fit_seconds})
        _, version = log_patron_model(path, register, all_tags)
        out.run_id = run.info.run_id
    if version is not None:
        out.registered = (register, str(version.version))
        if promote_registered:
            out.promotion = promote(register, version.version, metric, mode, force=force,
                                    tracking_uri=tracking_uri, champion_value=champion_value)
    return out


def evidence_key(metric: str, mode: str) -> str:
    return metric_key(metric, mode, "test")
