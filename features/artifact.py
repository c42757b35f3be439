"""Patron's one model-artifact format: written by training, read by serving.

An artifact is a directory::

    manifest.json   {"format": "patron-model", "format_version": 2, "kind", "model_name",
                     "params", "weighting", "metadata", "arrays": [...], "created_at"}
    ids.npz         customer_ids, item_ids (int64 or unicode; no pickle)
    arrays.npz      the model's arrays; a sparse matrix NAME is stored as
                    NAME.data / NAME.indices / NAME.indptr / NAME.shape
    history.npz     the training customers x items CSR (weighted as trained)
    items.parquet   optional item table (item_id, category, price, price_tier, item_name)
    NAME.parquet    optional named tables (``ModelArtifact.tables``, listed in the manifest's
                    ``"tables"``), e.g. ``customers`` and ``reminders``: the customer analytics
                    of :mod:`features.customers` as of the end of the training period

``kind`` tells how to score (see :mod:`features.scoring`): ``factors`` (user_factors,
item_factors), ``item_item`` (similarity: sparse or dense items x items),
``popularity`` (item_scores), ``repeat`` (own history + item_scores tie-break),
``blend`` (CF arrays plus ``item_scores``; params ``blend_weight`` and ``cf_kind``).

The optional files are part of format version 1: an artifact without them loads as before,
and a reader that does not know them ignores them.

Saving is atomic: a failed save never replaces a good artifact. Loading checks the
format and version and raises :class:`ArtifactError` naming what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import PatronError
from features.idmap import IdMap

FORMAT = "patron-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2: ids are kept exactly as the shop gave them (text ids stay text, so "007" and
"7" are two customers); version 1 artifacts, whose numeric-looking text ids were made
integers at ingest, load unchanged."""
KINDS = ("factors", "item_item", "popularity", "repeat", "blend")
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED_TABLES = ("items",)  # items.parquet is the item table


class ArtifactError(PatronError):
    """A model artifact cannot be read or written."""


@dataclass
class ModelArtifact:
    """Everything needed to score: arrays, id maps, training history, settings."""

    kind: str
    model_name: str
    customers: IdMap
    items: IdMap
    arrays: dict[str, np.ndarray | sp.csr_matrix]
    history: sp.csr_matrix
    params: dict = field(default_factory=dict)
    weighting: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    item_table: pd.DataFrame | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Optional named tables saved as ``NAME.parquet`` (e.g. ``customers``, ``reminders``)."""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArtifactError(f"unknown artifact kind {self.kind!r}; expected one of {KINDS}")
        self.history = sp.csr_matrix(self.history, dtype=np.float32)
        if self.history.shape != (len(self.customers), len(self.items)):
            raise ArtifactError(
                f"history shape {self.history.shape} does not match id maps "
                f"({len(self.customers)}, {len(self.items)})"
            )
        for name in self.tables:
            _check_table_name(name)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "kind": self.kind,
            "model_name": self.model_name,
            "params": self.params,
            "weighting": self.weighting,
            "metadata": self.metadata,
            "n_customers": self.n_customers,
            "n_items": self.n_items,
            "arrays": sorted(self.arrays),
            "tables": sorted(self.tables),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to directory ``path`` (replacing an existing artifact)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0700 is not the user's choice
        try:
            np.savez(tmp / "ids.npz", customer_ids=self.customers.ids, item_ids=self.items.ids)
            np.savez(tmp / "arrays.npz", **_flatten(self.arrays))
            np.savez(tmp / "history.npz", **_flatten({"history": self.history}))
            if self.item_table is not None:
                self.item_table.to_parquet(tmp / "items.parquet", index=False)
            for name, table in self.tables.items():
                _check_table_name(name)
                table.to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / "manifest.json").write_text(
                json.dumps(self.manifest(), indent=2, default=_json_default)
            )
            load_artifact(tmp)  # verify what we wrote before it replaces anything
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return path


def load_artifact(path: str | os.PathLike) -> ModelArtifact:
    """Read and validate an artifact directory."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(f"{path}: not a Patron model artifact (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: format {manifest.get('format')!r} is not {FORMAT!r}")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{mpath}: artifact format_version {version} is not supported "
            f"(this Patron reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
            "retrain or convert the model"
        )
    try:
        with np.load(path / "ids.npz", allow_pickle=False) as z:
            customers, items = IdMap(z["customer_ids"]), IdMap(z["item_ids"])
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = _unflatten({k: z[k] for k in z.files})
        with np.load(path / "history.npz", allow_pickle=False) as z:
            history = _unflatten({k: z[k] for k in z.files})["history"]
        item_table = None
        if (path / "items.parquet").is_file():
            item_table = pd.read_parquet(path / "items.parquet")
        names = manifest.get("tables", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ArtifactError(f"{mpath}: \"tables\" must be a list of table names")
        tables = {}
        for name in names:
            _check_table_name(name, mpath)
            if not (path / f"{name}.parquet").is_file():
                raise ArtifactError(f"{path}: table {name!r} listed in the manifest but "
                                    f"{name}.parquet is missing")
            tables[name] = pd.read_parquet(path / f"{name}.parquet")
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: damaged artifact ({exc})") from exc
    missing = set(manifest.get("arrays", [])) - set(arrays)
    if missing:
        raise ArtifactError(f"{path}: arrays missing from arrays.npz: {sorted(missing)}")
    return ModelArtifact(
        kind=manifest["kind"],
        model_name=manifest["model_name"],
        customers=customers,
        items=items,
        arrays=arrays,
        history=history,
        params=manifest.get("params", {}),
        weighting=manifest.get("weighting", {}),
        metadata=manifest.get("metadata", {}),
        item_table=item_table,
        tables=tables,
        format_version=version,
    )


def _check_table_name(name: str, where: object = "artifact") -> None:
    if not isinstance(name, str) or not TABLE_NAME.match(name) or name in RESERVED_TABLES:
        raise ArtifactError(
            f"{where}: table name {name!r} must be letters, digits and '_' (not starting "
            f"with a digit) and not one of {RESERVED_TABLES}"
        )


def _flatten(arrays: dict) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        if "." in name:
            raise ArtifactError(f"array name {name!r} may not contain '.'")
        if sp.issparse(a):
            a = sp.csr_matrix(a)
            out[f"{name}.data"] = a.data
            out[f"{name}.indices"] = a.indices
            out[f"{name}.indptr"] = a.indptr
            out[f"{name}.shape"] = np.asarray(a.shape, dtype=np.int64)
        else:
            out[name] = np.asarray(a)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for key, val in flat.items():
        if "." not in key:
            out[key] = val
    sparse_names = {k.split(".", 1)[0] for k in flat if "." in k}
    for name in sparse_names:
        out[name] = sp.csr_matrix(
            (flat[f"{name}.data"], flat[f"{name}.indices"], flat[f"{name}.indptr"]),
            shape=tuple(int(x) for x in flat[f"{name}.shape"]),
        )
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
