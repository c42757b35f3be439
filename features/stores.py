"""The project's record of where it keeps customer data, for ``patron forget`` and ``purge``.

``<project>/.patron/stores.json`` lists the ingest output folders (clean purchases and
rejects) and the exposure logs the project has written; ``patron ingest`` and ``patron
serve`` add to it. :func:`purchase_stores` also finds Patron purchase files anywhere in the
project's folder tree, so a store that was never recorded is not missed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from features.project import find_project

__all__ = ["record_store", "recorded", "purchase_stores", "STORES_FILE"]

STORES_FILE = "stores.json"
_SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".patron"}


def _file(project: Path) -> Path:
    return project / STORES_FILE


def recorded(project: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(_file(project).read_text())
    except (OSError, ValueError):
        data = {}
    return {k: list(v) for k, v in data.items() if isinstance(v, list)}


def record_store(kind: str, path: str | os.PathLike, start: str | os.PathLike | None = None) -> None:
    """Add ``path`` (absolute) to the project's list of ``kind`` stores, when in a project."""
    project = find_project(start)
    if project is None:
        return
    data = recorded(project)
    p = str(Path(path).resolve())
    if p not in data.setdefault(kind, []):
        data[kind].append(p)
        tmp = _file(project).with_name(f".{STORES_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, _file(project))


def purchase_stores(project: Path) -> list[Path]:
    """Folders holding a Patron ``purchases.parquet``: the recorded ones and any in the tree."""
    from features.ingest import PURCHASES_FILE, is_purchases_file

    found = [Path(p) for p in recorded(project).get("purchases", []) if Path(p).is_dir()]
    root = project.parent
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP]
        if PURCHASES_FILE in filenames and is_purchases_file(Path(dirpath) / PURCHASES_FILE):
            found.append(Path(dirpath))
    return sorted({p.resolve() for p in found})
