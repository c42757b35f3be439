"""The MLflow model registry for Patron: log a model as pyfunc, register it, promote it.

A registered version is an MLflow pyfunc model (:mod:`training.pyfunc_model`) whose
directory holds the Patron artifact at ``artifacts/patron_model/`` (serving reads it
from there). The run that logged it carries the test metrics (``test.<mode>.<metric>``,
e.g. ``test.new.ndcg_at_10``) and the version carries the split id
(``patron.split_id``), so :func:`promote` can compare a candidate with the champion
on the same test split.

Aliases: ``champion`` (what serving loads by default) moves only when the candidate
beats the champion (or ``force``); ``challenger`` marks a version for A/B tests.
Every decision is written on the candidate version as ``patron.promote.*`` tags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.artifact import ModelArtifact, load_artifact
from features.errors import PatronError
from training.tracking import client, metric_key

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
ARTIFACT_KEY = "patron_model"
DEFAULT_NAME = "patron"
SPLIT_TAG = "patron.split_id"

__all__ = [
    "RegistryError", "PromoteResult", "log_patron_model", "signature_for", "promote",
    "DEFAULT_NAME", "ARTIFACT_KEY",
]


class RegistryError(PatronError):
    """A registered model or version cannot be found or compared."""


def signature_for(art: ModelArtifact):
    """Input ``customer_id`` (+ optional ``n``, ``exclude_bought``); output the ranked list.
    The input id may be text or a number either way ("1" and 1 name the same customer of an
    integer-id model, as in the service); the output keeps the model's id type."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    cust = "long" if art.customers.is_numeric else "string"
    item = "long" if art.items.is_numeric else "string"
    inputs = Schema([
        ColSpec(AnyType(), "customer_id"),
        ColSpec("long", "n", required=False),
        ColSpec("boolean", "exclude_bought", required=False),
    ])
    outputs = Schema([
        ColSpec(cust, "customer_id"), ColSpec(item, "item_id"),
        ColSpec("long", "rank"), ColSpec("double", "score"),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_patron_model(
    artifact_dir: str | Path,
    registered_model_name: str | None = None,
    tags: dict[str, str] | None = None,
    name: str = "model",
):
    """Log the artifact at ``artifact_dir`` as a pyfunc model in the active MLflow run and
    optionally register it. Returns ``(model_info, model_version | None)``."""
    import mlflow
    import pandas as pd

    import features

    art = load_artifact(artifact_dir)  # refuses artifacts of another format version
    # made-up ids: no customer's raw id goes into the registry's example files
    example = pd.DataFrame({"customer_id": [-1, -2] if art.customers.is_numeric
                            else ["example-customer-1", "example-customer-2"]})
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_CODE),
        artifacts={ARTIFACT_KEY: str(Path(artifact_dir).resolve())},
        signature=signature_for(art),
        input_example=example,
        pip_requirements=_requirements(),
        # Patron's features package (the artifact reader and the scorer) travels with the
        # model: a fresh environment with only the requirements below loads it
        code_paths=[str(Path(features.__file__).resolve().parent)],
    )
    version = None
    if registered_model_name:
        c = client(mlflow.get_tracking_uri())
        version = mlflow.register_model(info.model_uri, registered_model_name,
                                        tags={k: str(v) for k, v in (tags or {}).items()})
        for k, v in (tags or {}).items():  # older stores ignore tags on create
            c.set_model_version_tag(registered_model_name, version.version, k, str(v))
    return info, version


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("mlflow", "numpy", "pandas", "scipy", "pyarrow", "pydantic"):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class PromoteResult:
    """What :func:`promote` decided and why."""

    name: str
    version: str
    alias: str
    decision: str  # first | promoted | rejected | forced | already
    metric: str
    candidate_value: float | None
    champion_version: str | None
    champion_value: float | None
    reason: str

    @property
    def moved(self) -> bool:
        return self.decision in ("first", "promoted", "forced")


def _version(c, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"no registered model named {name!r}") from None
    try:
        return c.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"registered model {name!r} has no version {version}") from None


def _alias(c, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metric(c, mv, key: str) -> float | None:
    """A version's test metric: from the run that logged it, else a ``patron.<key>`` tag."""
    tag = mv.tags.get(f"patron.{key}")
    if mv.run_id:
        try:
            value = c.get_run(mv.run_id).data.metrics.get(key)
        except Exception:  # run deleted or on another store
            value = None
        if value is not None:
            return float(value)
    return float(tag) if tag is not None else None


def promote(
    name: str = DEFAULT_NAME,
    version: str | int | None = None,
    metric: str = "ndcg@10",
    mode: str = "new",
    force: bool = False,
    challenger: bool = False,
    tracking_uri: str | None = None,
    champion_value: float | None = None,
) -> PromoteResult:
    """Move the ``champion`` (or ``challenger``) alias to ``version`` if it earns it.

    The candidate must beat the current champion on ``test.<mode>.<metric>`` measured on
    the same test split (``patron.split_id`` tags equal); ``force`` skips the guard. The
    first version of a model becomes champion. ``challenger`` sets that alias after the
    same comparison is recorded (a challenger need not win). The comparison is written
    on the candidate version as ``patron.promote.*`` tags; nothing else changes when the
    candidate is rejected.

    The candidate must also beat the best baseline scored on its own split (the version's
    ``patron.baseline.<key>`` tag, written by :func:`training.release.release`), unless
    ``force``. ``champion_value``: the champion's configuration scored on the candidate's
    split (``patron retrain`` refits it there), used instead of the champion's own evidence.
    """
    if mode not in ("new", "repeat"):
        raise PatronError(f"--mode must be new or repeat, not {mode!r}")
    c = client(tracking_uri)
    if version is None:
        raise PatronError("give the version to promote (--version)")
    cand = _version(c, name, str(version))
    from training.recovery import tag_undecided

    tag_undecided(c, name, skip={str(cand.version)})  # versions a killed process left behind
    alias = "challenger" if challenger else "champion"
    key = metric_key(metric, mode, "test")
    cand_value = version_metric(c, cand, key)
    champ = _alias(c, name, "champion")
    champ_value = version_metric(c, champ, key) if champ is not None else None
    same_split = champion_value is not None
    if same_split:
        champ_value = float(champion_value)
    base_value = cand.tags.get(f"patron.baseline.{key}")
    base_model = cand.tags.get(f"patron.baseline_model.{key}", "baseline")
    base_value = float(base_value) if base_value not in (None, "") else None
    below_base = (base_value is not None and cand_value is not None and not challenger
                  and not cand_value > base_value)
    base_note = (f"{key} {cand_value:.4f} does not beat the best baseline {base_model}'s "
                 f"{base_value:.4f} on the same split" if below_base else "")

    if champ is not None and champ.version == cand.version and not challenger:
        decision, reason = "already", f"version {cand.version} is already the champion"
    elif below_base:
        decision, reason = ("forced", f"forced although {base_note}") if force else (
            "rejected", base_note)
    elif champ is None:
        decision, reason = "first", "no champion yet: the first version becomes champion"
        if challenger:
            decision, reason = "promoted", "no champion to compare with"
    else:
        verdict = _compare(cand, champ, cand_value, champ_value, key, same_split)
        if challenger:
            decision, reason = "promoted", f"challenger set; {verdict[1]}"
        elif verdict[0]:
            decision, reason = "promoted", verdict[1]
        elif force:
            decision, reason = "forced", f"forced although {verdict[1]}"
        else:
            decision, reason = "rejected", verdict[1]

    result = PromoteResult(
        name=name, version=str(cand.version), alias=alias, decision=decision, metric=key,
        candidate_value=cand_value, champion_version=None if champ is None else str(champ.version),
        champion_value=champ_value, reason=reason,
    )
    if result.moved:
        c.set_registered_model_alias(name, alias, str(cand.version))
    tags = {
        "patron.promote.alias": alias,
        "patron.promote.decision": decision,
        "patron.promote.metric": key,
        "patron.promote.candidate_value": _s(cand_value),
        "patron.promote.champion_version": result.champion_version or "",
        "patron.promote.champion_value": _s(champ_value),
        "patron.promote.reason": reason,
        "patron.promote.baseline_model": base_model if base_value is not None else "",
        "patron.promote.baseline_value": _s(base_value),
        "patron.promote.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for k, v in tags.items():
        c.set_model_version_tag(name, str(cand.version), k, v)
    return result


def _compare(cand, champ, cand_value, champ_value, key, same_split=False) -> tuple[bool, str]:
    cs, hs = cand.tags.get(SPLIT_TAG), champ.tags.get(SPLIT_TAG)
    if cs and hs and cs != hs and not same_split:
        return False, (f"not comparable: version {cand.version} was tested on split {cs}, "
                       f"champion {champ.version} on {hs}")
    if cand_value is None:
        return False, f"version {cand.version} has no logged {key}"
    if champ_value is None:
        return True, f"champion {champ.version} has no logged {key}"
    where = " (its configuration refit on this split)" if same_split else ""
    if same_split and np.isfinite(cand_value) and cand_value >= champ_value:
        # retrain: the champion's own configuration on newer data ties it, and is fresher
        return True, (f"{key} {cand_value:.4f} matches or beats champion {champ.version}'s "
                      f"{champ_value:.4f}{where}")
    if not np.isfinite(cand_value) or cand_value <= champ_value:
        return False, (f"{key} {cand_value:.4f} does not beat champion "
                       f"{champ.version}'s {champ_value:.4f}{where}")
    return True, f"{key} {cand_value:.4f} beats champion {champ.version}'s {champ_value:.4f}{where}"


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"
