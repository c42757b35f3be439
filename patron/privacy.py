"""Forget customers everywhere the project keeps them, and purge old logs (GDPR art. 17).

:func:`forget` removes the given customers from

1. the purchase stores (every ``purchases.parquet`` the project recorded or holds in its
   folder tree, and the ``rejects`` beside it), each file rewritten atomically;
2. the exposure logs (JSONL files, rolled daily files and the PostgreSQL table), matched by
   their pseudonymous keys under every secret of the key ring; file logs are rewritten under
   their exclusive lock through a complete copy (:func:`serving.exposure.rewrite_log`);
3. the models: every registered version whose artifact knows them (id maps, history, customer
   tables) is replaced: the configuration of the ``champion`` and ``challenger`` is refit on
   the cleaned purchases and registered (the aliases move to the new versions), then every
   version that still holds them is deleted with its artifacts (``keep_versions`` refuses
   instead, before anything changes); local artifacts under ``.patron/models`` that know them
   are deleted. A refit is what removes a customer's influence: for ALS, dropping their row of
   user factors forgets their vector, but the item factors were shaped by their purchases and
   keep that until the model is fit again without them.

It writes an audit record (``.patron/audit/forget-<time>.json``: when, how many customers,
rows and files per store, versions created and retired) that holds no raw id. Every step is
idempotent and each store is left consistent at any moment: a killed run is finished by
running it again. (Live shop events are not stored by this version of Patron.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import columns as C
from features.errors import PatronError

__all__ = ["ForgetReport", "forget", "purge", "read_ids"]

_CANONICAL_INT = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")


def read_ids(ids: list[str], from_file: str | None) -> list[str]:
    """The customer ids to forget, exactly as the shop writes them (one per line in a file)."""
    out = [str(i) for i in ids]
    if from_file:
        out += [ln.strip() for ln in Path(from_file).read_text().splitlines() if ln.strip()]
    out = list(dict.fromkeys(out))
    if not out:
        raise PatronError("no customer id given (CUSTOMER_ID ... or --from-file)")
    return out


def _matcher(ids: list[str]):
    text = set(ids)
    ints = {int(i) for i in ids if _CANONICAL_INT.match(i)}

    def match(values: pd.Series) -> np.ndarray:
        if values.dtype.kind in "iu":
            return values.isin(ints).to_numpy()
        return values.astype("string").isin(text).fillna(False).to_numpy(dtype=bool)

    return match, text, ints


@dataclass
class ForgetReport:
    at: str
    customers: int
    stores: list[dict] = field(default_factory=list)
    versions_created: list[str] = field(default_factory=list)
    versions_retired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str, rows: int, files: int = 1) -> None:
        self.stores.append({"store": kind, "where": where, "rows_removed": int(rows), "files": files})


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _forget_purchases(folder: Path, match, report: ForgetReport, root: Path) -> None:
    from features.ingest import PURCHASES_FILE, _atomic_write, read_purchases, write_purchases

    p = read_purchases(folder)
    hit = match(p[C.CUSTOMER_ID])
    if hit.any():
        write_purchases(p.loc[~hit].reset_index(drop=True), folder / PURCHASES_FILE)
    report.add("purchases", _rel(folder / PURCHASES_FILE, root), hit.sum())
    for name in ("rejects.parquet", "rejects.csv"):
        path = folder / name
        if not path.is_file():
            continue
        rej = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path, dtype=str)
        col = f"raw_{C.CUSTOMER_ID}"
        if col not in rej.columns:
            continue
        hit = match(rej[col].astype("string"))
        if hit.any():
            kept = rej.loc[~hit]
            if name.endswith(".parquet"):
                _atomic_write(path, lambda tmp, kept=kept: kept.to_parquet(tmp, index=False))
            else:
                _atomic_write(path, lambda tmp, kept=kept: kept.to_csv(tmp, index=False))
        report.add("rejects", _rel(path, root), hit.sum())


def _version_ids_hit(path: Path, ids_text: set[str], ids_int: set[int]) -> bool:
    from features.artifact import load_artifact

    art = load_artifact(path)
    values = list(ids_int) if art.customers.is_numeric else list(ids_text)
    return bool(values) and bool(art.customers.contains(values).any())


def forget(
    ids: list[str],
    *,
    name: str = "patron",
    data: str | None = None,
    exposure_logs: list[str] | None = None,
    exposure_urls: list[str] | None = None,
    keep_versions: bool = False,
    notify: list[str] | None = None,
    say=print,
) -> ForgetReport:
    """See the module docstring; returns the audit record (also written to the project)."""
    from features.project import project_dir

    project = project_dir()  # forget works on an existing project only
    root = project.parent
    match, ids_text, ids_int = _matcher(ids)
    report = ForgetReport(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), len(ids))

    # -- the registry first: refuse before anything changes -------------------------------
    import tempfile

    cache = tempfile.mkdtemp(prefix="patron-forget-")  # downloaded versions: removed at the end
    try:
        return _forget(project, root, ids, match, ids_text, ids_int, report, name, data,
                       exposure_logs, exposure_urls, keep_versions, notify, say, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _forget(project, root, ids, match, ids_text, ids_int, report, name, data, exposure_logs,
            exposure_urls, keep_versions, notify, say, cache) -> ForgetReport:
    from features.stores import purchase_stores, recorded

    registry = _registry_plan(name, ids_text, ids_int, project, cache)
    if keep_versions and registry["hit"]:
        raise PatronError(f"{len(registry['hit'])} registered version(s) of {name} hold these "
                          f"customers ({', '.join(registry['hit'])}) and --keep-versions was "
                          "given: nothing changed")

    # -- purchase stores -------------------------------------------------------------------
    stores = purchase_stores(project)
    for folder in stores:
        _forget_purchases(folder, match, report, root)
    say(f"purchase stores: {len(stores)} checked, "
        f"{sum(s['rows_removed'] for s in report.stores if s['store'] == 'purchases'):,} rows removed")

    # -- exposure logs ---------------------------------------------------------------------
    from serving.exposure import log_files, rewrite_log
    from serving.keys import load_keyring

    logs = list(dict.fromkeys([*(exposure_logs or []), *recorded(project).get("exposure_logs", [])]))
    for base in logs:
        ring = load_keyring(base, create=False) if log_files(base) else None
        if ring is None:
            continue
        keys = set().union(*(ring.all_keys(i) for i in [*ids_text, *ids_int]))
        for f in log_files(base):
            n = rewrite_log(f, lambda rec, keys=keys: rec.get("customer_key") not in keys)
            report.add("exposure_log", _rel(f, root), n)
    urls = list(dict.fromkeys([*(exposure_urls or []),
                               *([os.environ["PATRON_EXPOSURE_URL"]] if os.environ.get("PATRON_EXPOSURE_URL") else [])]))
    for url in urls:
        from serving.exposure_pg import delete_where_pg, mask, pg_keyring

        ring = pg_keyring(url)
        keys = set().union(*(ring.all_keys(i) for i in [*ids_text, *ids_int]))
        report.add("exposure_table", mask(url), delete_where_pg(url, keys=keys))
    say(f"exposure logs: {len(logs)} file log(s), {len(urls)} table(s), "
        f"{sum(s['rows_removed'] for s in report.stores if s['store'].startswith('exposure')):,} records removed")

    # -- models ----------------------------------------------------------------------------
    for path in sorted((project / "models").glob("*/manifest.json")):
        if _version_ids_hit(path.parent, ids_text, ids_int):
            shutil.rmtree(path.parent)
            report.add("local_model", _rel(path.parent, root), 0)
    if registry["hit"]:
        _replace_versions(name, registry, data, stores, report, say)
    say(f"registry: {len(report.versions_created)} version(s) refit without them, "
        f"{len(report.versions_retired)} retired")
    for src in recorded(project).get("sources", []):
        if Path(src).exists():
            report.notes.append(f"raw source {src} was ingested into this project; it is the "
                                "shop's own file and was not changed: erase the customers there too")
    if notify:
        from training.retrain import _notify

        for n in _notify(notify):
            report.notes.append(f"reload {n['url']}: {'ok' if n['ok'] else 'FAILED'} ({n['status']})")
    audit = project / "audit"
    audit.mkdir(exist_ok=True)
    out = audit / f"forget-{report.at.replace(':', '')}-{os.getpid()}.json"
    out.write_text(json.dumps(asdict(report), indent=2))
    say(f"audit record: {out}")
    return report


def _registry_plan(name: str, ids_text: set[str], ids_int: set[int], project: Path,
                   cache: str) -> dict:
    """Versions of ``name`` whose artifacts know any of the customers, and the aliases."""
    from features.model_store import fetch_registered
    from features.project import tracking_uri
    from training.tracking import client

    try:
        uri = tracking_uri()
    except PatronError:
        return {"hit": [], "aliases": {}, "uri": None}
    c = client(uri)
    try:
        versions = c.search_model_versions(f"name = '{name}'")
    except Exception:  # no such model
        return {"hit": [], "aliases": {}, "uri": uri}
    hit = []
    for mv in versions:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        path, _ = fetch_registered(f"models:/{name}/{mv.version}", cache_dir=cache)
        if _version_ids_hit(path, ids_text, ids_int):
            hit.append(str(mv.version))
    aliases = {}
    for alias in ("champion", "challenger"):
        try:
            aliases[alias] = str(c.get_model_version_by_alias(name, alias).version)
        except Exception:  # alias not set
            pass
    return {"hit": sorted(hit, key=int), "aliases": aliases, "uri": uri, "cache": cache}


def _replace_versions(name, registry, data, stores, report: ForgetReport, say) -> None:
    from features.artifact import load_artifact
    from features.model_store import fetch_registered
    from training.pipeline import load_purchases
    from training.release import release
    from training.tracking import client, setup_mlflow

    uri = registry["uri"]
    c = client(uri)
    setup_mlflow(uri, "patron")
    source = data or (str(stores[-1]) if stores else None)
    purchases = None
    for alias, version in registry["aliases"].items():
        if version not in registry["hit"]:
            continue
        if source is None:
            raise PatronError(f"{name}@{alias} holds these customers and no purchase store is "
                              "known to refit it on: give --data")
        purchases = purchases if purchases is not None else load_purchases(source)
        path, _ = fetch_registered(f"models:/{name}/{version}", cache_dir=registry["cache"])
        art = load_artifact(path)
        params = dict(art.metadata.get("flat_params") or {})
        say(f"refitting {name}@{alias} ({art.model_name}) without them on {len(purchases):,} purchases")
        ev = _evidence(purchases, art.model_name, params)
        rel = release(purchases, art.model_name, params, ev, refit_on="all", register=name,
                      promote_registered=False, tracking_uri=uri, source=source,
                      tags={"patron.forget_of": version}, say=say)
        new = rel.registered[1]
        c.set_registered_model_alias(name, alias, new)
        c.set_model_version_tag(name, new, "patron.promote.decision", "forget-refit")
        c.set_model_version_tag(name, new, "patron.promote.reason",
                                f"refit of version {version} without forgotten customers")
        report.versions_created.append(new)
    for version in registry["hit"]:
        _retire(c, name, version)
        report.versions_retired.append(version)


def _evidence(purchases: pd.DataFrame, model: str, params: dict):
    """The refit's evidence on the usual split (the guard compares later versions with it)."""
    from training.pipeline import data_description, split_id, train_model
    from training.release import Evidence, baseline_evidence, baselines_on
    from training.split import SplitError, split_global_time

    try:
        split = split_global_time(purchases, holdout_days=28, min_customers=1)
    except SplitError:
        return Evidence("", {}, {})
    res = train_model(split.train, model, params, split.test, (10,), extras=False)
    sid = split_id(data_description(purchases), split.description)
    return Evidence(sid, split.description, res.flat_metrics(),
                    baseline_evidence(baselines_on(split.train, split.test, (10,))))


def _retire(c, name: str, version: str) -> None:
    """Delete a version and the files of its model (the artifacts hold the customers)."""
    from urllib.parse import urlparse

    try:
        uri = c.get_model_version_download_uri(name, version)
    except Exception:  # already deleted by a run that was killed after this
        return
    mv = c.get_model_version(name, version)
    c.delete_model_version(name, version)
    local = urlparse(uri).path if uri.startswith("file:") else (uri if uri.startswith("/") else None)
    if local:
        folder = Path(local)
        target = folder.parent if folder.name == "artifacts" else folder
        shutil.rmtree(target, ignore_errors=True)
    model_id = getattr(mv, "model_id", None)
    if model_id and hasattr(c, "delete_logged_model"):
        try:
            c.delete_logged_model(model_id)
        except Exception:  # the entity may be gone already; its files are
            pass


def purge(older_than_days: float, *, exposure_logs: list[str] | None = None,
          exposure_urls: list[str] | None = None, say=print) -> dict:
    """Remove exposure records older than ``older_than_days`` (retention); rolled daily files
    wholly older are deleted, other files rewritten under their lock."""
    from features.project import find_project
    from features.stores import recorded
    from serving.exposure import log_files, rewrite_log

    cutoff = time.time() - older_than_days * 86400
    project = find_project()
    logs = list(dict.fromkeys([*(exposure_logs or []),
                               *(recorded(project).get("exposure_logs", []) if project else [])]))
    out = {"files_deleted": 0, "records_removed": 0, "cutoff": cutoff}
    day = time.strftime("%Y-%m-%d", time.gmtime(cutoff))
    for base in logs:
        b = Path(base)
        for f in log_files(b):
            stamp = f.stem[len(b.stem) + 1:] if f != b else None
            if stamp and stamp < day:
                f.unlink()
                out["files_deleted"] += 1
                continue
            out["records_removed"] += rewrite_log(f, lambda rec: float(rec.get("ts", 0)) >= cutoff)
    for url in exposure_urls or ([os.environ["PATRON_EXPOSURE_URL"]] if os.environ.get("PATRON_EXPOSURE_URL") else []):
        from serving.exposure_pg import delete_where_pg

        out["records_removed"] += delete_where_pg(url, before_ts=cutoff)
    say(f"purged exposure records before {time.strftime('%Y-%m-%d %H:%M', time.gmtime(cutoff))} "
        f"UTC: {out['records_removed']:,} records, {out['files_deleted']} daily file(s)")
    return out
