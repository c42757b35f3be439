"""Load a model for serving from a local artifact path or the MLflow registry.

URIs: ``models:/NAME@alias`` (default ``models:/patron@champion``), ``models:/NAME/VERSION``,
or a local directory holding a Patron artifact (``manifest.json``) or an MLflow model
directory with the artifact at ``artifacts/patron_model/``. The registry is read with
MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI as MLflow itself reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from features.artifact import ArtifactError, load_artifact
from features.errors import PatronError
from serving.engine import Engine

__all__ = ["DEFAULT_URI", "LoadedModel", "ModelLoadError", "resolve_local", "load_engine",
           "check_reload_uri"]

DEFAULT_URI = "models:/patron@champion"
MLFLOW_SUBDIR = Path("artifacts") / "patron_model"


class ModelLoadError(PatronError):
    """The model URI cannot be resolved or its artifact cannot be read."""


@dataclass(frozen=True)
class LoadedModel:
    engine: Engine
    info: dict


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


def check_reload_uri(uri: str) -> str:
    """A ``model_uri`` an admin may switch to: ``models:/...`` or an absolute path to an
    artifact directory (its manifest at the top); anything else is refused (no search)."""
    uri = (uri or "").strip()
    if uri.startswith("models:/"):
        if len(uri) <= len("models:/") or uri.endswith(("/", "@")):
            raise ModelLoadError(f"model_uri {uri!r}: give models:/NAME@alias or models:/NAME/VERSION")
        return uri
    if not uri:
        raise ModelLoadError("model_uri: empty; give models:/NAME@alias or an absolute artifact path")
    p = Path(uri[5:] if uri.startswith("file:") else uri)
    if not p.is_absolute():
        raise ModelLoadError("model_uri: a path must be absolute (the server's working folder is "
                             "not the caller's)")
    if not (p / "manifest.json").is_file():
        raise ModelLoadError("model_uri: no manifest.json at the top of that folder: give the "
                             "artifact directory itself")
    return str(p)


def _registry(uri: str, cache_dir: str | None) -> tuple[Path, dict]:
    import mlflow
    from mlflow import MlflowClient

    spec = uri[len("models:/"):]
    client = MlflowClient()
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = spec.partition("/")
            mv = client.get_model_version(name, version)
            alias = None
    except Exception as exc:  # MlflowException, connection errors
        raise ModelLoadError(f"{uri}: cannot resolve in the MLflow registry ({exc})") from exc
    dst = tempfile.mkdtemp(prefix=f"patron-{name}-v{mv.version}-", dir=cache_dir)
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=dst)
    except Exception as exc:
        raise ModelLoadError(f"{uri}: cannot download version {mv.version} ({exc})") from exc
    info = {
        "registry_name": name,
        "alias": alias,
        "registry_version": str(mv.version),
        "run_id": mv.run_id,
        "version": f"{name}/{mv.version}",
    }
    return resolve_local(local), info


def load_engine(uri: str, *, cache_dir: str | None = None, check: bool = True) -> LoadedModel:
    """Resolve ``uri``, read the artifact, build an :class:`Engine` and sanity-check it."""
    if uri.startswith("models:/"):
        path, info = _registry(uri, cache_dir)
    else:
        path = resolve_local(uri)
        info = {}
    try:
        art = load_artifact(path)
    except ArtifactError as exc:
        raise ModelLoadError(f"{uri}: {exc}") from exc
    raw = (path / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    created = manifest.get("created_at", "")
    st = (path / "arrays.npz").stat()
    digest = hashlib.sha1(raw + f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:8]
    version = info.get("version") or f"{art.model_name}@{created or 'local'}#{digest}"
    try:
        engine = Engine(art, uri=uri, version=version)
        engine.path = str(path)
        checked = engine.check() if check else {}
    except PatronError:
        raise
    except Exception as exc:  # broken arrays: shapes, dtypes, missing keys
        raise ModelLoadError(f"{uri}: model cannot serve ({type(exc).__name__}: {exc})") from exc
    info.update(
        uri=uri,
        path=str(path),
        version=version,
        model_name=art.model_name,
        kind=art.kind,
        created_at=created,
        n_customers=art.n_customers,
        n_items=art.n_items,
        has_item_table=art.item_table is not None,
        has_cross_sell="xsell_lift" in art.arrays,
        tables=sorted(art.tables),
        customer_tables=art.metadata.get("customer_tables"),
        data=art.metadata.get("data", art.metadata),
        check=checked,
    )
    return LoadedModel(engine=engine, info=info)
