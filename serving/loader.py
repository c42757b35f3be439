"""Load a model for serving from a local artifact path or the MLflow registry.

URIs: ``models:/NAME@alias`` (default ``models:/patron@champion``), ``models:/NAME/VERSION``,
or a local directory holding a Patron artifact (``manifest.json``) or an MLflow model
directory whose ``patron_model`` artifact holds one. The registry is the project's store
(:func:`features.project.tracking_uri`: ``$MLFLOW_TRACKING_URI``, else the nearest
``.patron/mlflow.db`` at or above the working folder); it is never created here, and a URI
that cannot be resolved names the store searched and what it holds. A relative path is
relative to the working folder (``patron serve`` makes it absolute where it was typed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from features.artifact import ArtifactError, load_artifact
from features.errors import PatronError
from features.model_store import (
    ModelLoadError,
    fetch_registered,
    resolve_local,
    resolve_registered,
)
from serving.engine import Engine

__all__ = ["DEFAULT_URI", "LoadedModel", "ModelLoadError", "resolve_local", "load_engine",
           "check_reload_uri", "fetch_registered", "resolve_registered"]

DEFAULT_URI = "models:/patron@champion"


@dataclass(frozen=True)
class LoadedModel:
    engine: Engine
    info: dict


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


def load_engine(uri: str, *, cache_dir: str | None = None, check: bool = True) -> LoadedModel:
    """Resolve ``uri``, read the artifact, build an :class:`Engine` and sanity-check it."""
    if uri.startswith("models:/"):
        path, info = fetch_registered(uri, cache_dir)
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
