"""Where a model artifact is found: a local directory or a version in the project's registry.

Both ``serving`` (the service loads its models) and ``training``/``experiments`` (retrain reads
the champion, compare loads ``models:/`` URIs) read models through here, so a URI means the
same thing everywhere:

- a local directory holding a Patron artifact (``manifest.json``), or an MLflow model directory
  whose ``MLmodel`` declares the ``patron_model`` artifact (:func:`resolve_local`; never a
  search below the folder);
- ``models:/NAME@alias`` or ``models:/NAME/VERSION`` in the project's registry
  (:func:`features.project.tracking_uri`: ``$MLFLOW_TRACKING_URI``, else the nearest
  ``.patron/mlflow.db``), never created here; a URI that cannot be resolved names the store
  searched and what it holds (:func:`resolve_registered`, :func:`fetch_registered`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from features.errors import PatronError

__all__ = ["ModelLoadError", "MLFLOW_SUBDIR", "resolve_local", "resolve_registered",
           "fetch_registered"]

MLFLOW_SUBDIR = Path("artifacts") / "patron_model"


class ModelLoadError(PatronError):
    """The model URI cannot be resolved or its artifact cannot be read."""


def resolve_local(path: str | os.PathLike) -> Path:
    """The artifact directory ``path`` names: the path itself, or an MLflow model directory
    holding it at ``artifacts/patron_model/``. Never a search: a folder that merely contains
    an artifact somewhere below is refused."""
    text = str(path).strip()
    if not text:
        raise ModelLoadError("model path is empty: give models:/NAME@alias or an artifact directory")
    p = Path(text[5:] if text.startswith("file:") else text)
    cands = [p, p / MLFLOW_SUBDIR]
    named = _mlmodel_artifact(p)
    if named is not None:
        cands.insert(0, named)
    for cand in cands:
        if (cand / "manifest.json").is_file():
            return cand
    raise ModelLoadError(f"{path}: not a Patron model artifact (no manifest.json in it, and no "
                         "MLflow model whose patron_model artifact holds one)")


def _mlmodel_artifact(model_dir: Path) -> Path | None:
    """The ``patron_model`` artifact an MLflow model directory declares in its ``MLmodel``."""
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    try:
        import yaml

        meta = yaml.safe_load(mlmodel.read_text()) or {}
        rel = meta["flavors"]["python_function"]["artifacts"]["patron_model"]["path"]
    except Exception:  # not our pyfunc layout: no declared artifact
        return None
    cand = (model_dir / rel).resolve()
    return cand if cand.is_relative_to(model_dir.resolve()) else None


def _holds(client) -> str:
    """What a registry holds, in a few words (for an error message)."""
    try:
        models = client.search_registered_models(max_results=20)
    except Exception:  # the store itself is unreadable: the caller's error says so
        return "it cannot be read"
    if not models:
        return "it holds no registered model"
    parts = []
    for m in models:
        aliases = ", ".join(f"@{a}=v{v}" for a, v in sorted((m.aliases or {}).items()))
        latest = max((int(v.version) for v in (m.latest_versions or [])), default=0)
        parts.append(f"{m.name} (v1..v{latest}{'; ' + aliases if aliases else ''})")
    return "it holds " + "; ".join(parts)


def resolve_registered(uri: str, store: str | None = None):
    """``(store, client, name, alias, model version)`` of a ``models:/`` URI in the project's
    registry (or ``store``); :class:`ModelLoadError` naming the store and what it holds."""
    from mlflow import MlflowClient

    from features.project import tracking_uri

    try:
        store = store or tracking_uri()
    except PatronError as exc:
        raise ModelLoadError(f"{uri}: {exc}") from exc
    spec = uri[len("models:/"):]
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = spec.partition("/")
            mv = client.get_model_version(name, version)
            alias = None
    except Exception as exc:  # MlflowException, connection errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"{uri}: not found in the registry of {store} ({first}); "
                             f"{_holds(client)}") from exc
    return store, client, name, alias, mv


def fetch_registered(uri: str, cache_dir: str | None = None) -> tuple[Path, dict]:
    """Download a ``models:/`` version from the project's registry: ``(artifact dir, info)``."""
    import mlflow

    store, client, name, alias, mv = resolve_registered(uri)
    dst = tempfile.mkdtemp(prefix=f"patron-{name}-v{mv.version}-", dir=cache_dir)
    try:
        source = client.get_model_version_download_uri(name, mv.version)
        local = mlflow.artifacts.download_artifacts(source, dst_path=dst, tracking_uri=store)
    except Exception as exc:
        raise ModelLoadError(f"{uri}: cannot download version {mv.version} from {store} ({exc})") from exc
    info = {
        "registry_name": name,
        "alias": alias,
        "registry_version": str(mv.version),
        "run_id": mv.run_id,
        "version": f"{name}/{mv.version}",
    }
    return resolve_local(local), info
