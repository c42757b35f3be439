"""Where a Patron project keeps its stores: one answer for every command and the service.

A project is a folder holding ``.patron/`` (created by the first ``patron tune``, ``train``
or ``ingest`` there). Its tracking and registry store is ``.patron/mlflow.db`` (artifacts in
``.patron/mlartifacts``), its Optuna studies ``.patron/optuna.db``.

:func:`tracking_uri` resolves the store the same way everywhere: an explicit URI
(``--tracking-uri``), else ``$MLFLOW_TRACKING_URI``, else the project found by walking up
from the working folder to the nearest ``.patron/``. Commands that only read (``serve``,
``promote``, ``compare``, the service itself) never create a store: when there is none they
raise :class:`NoProjectError` naming the folders searched.
"""

from __future__ import annotations

import os
from pathlib import Path

from features.errors import PatronError

__all__ = ["PROJECT_DIR", "NoProjectError", "find_project", "project_dir", "tracking_uri",
           "store_path"]

PROJECT_DIR = ".patron"
ENV = "MLFLOW_TRACKING_URI"


class NoProjectError(PatronError):
    """No store was given and none was found from the working folder."""


def find_project(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest ``.patron/`` folder at or above ``start`` (default: the working folder)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        cand = folder / PROJECT_DIR
        if cand.is_dir():
            return cand
    return None


def project_dir(create: bool = False, start: str | os.PathLike | None = None) -> Path:
    """The project's ``.patron/`` folder; with ``create``, a new one in the working folder
    when none is found above it."""
    found = find_project(start)
    if found is not None:
        return found
    here = Path(start or os.getcwd()).resolve()
    if not create:
        raise NoProjectError(
            f"no Patron project found: no {PROJECT_DIR}/ folder in {here} or any folder above "
            f"it (run patron ingest/tune/train in the project folder first, or give "
            f"--tracking-uri / set {ENV})")
    path = here / PROJECT_DIR
    path.mkdir(exist_ok=True)
    return path


def store_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for other stores)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def tracking_uri(explicit: str | None = None, create: bool = False,
                 start: str | os.PathLike | None = None) -> str:
    """The tracking/registry store (see the module docstring). Reading (``create=False``)
    an SQLite store that does not exist raises instead of creating an empty one."""
    uri = explicit or os.environ.get(ENV)
    if not uri:
        uri = f"sqlite:///{project_dir(create, start) / 'mlflow.db'}"
    db = store_path(uri)
    if db is not None and not create and not db.is_file():
        raise NoProjectError(f"tracking store {uri} does not exist (nothing was tracked or "
                             "registered there yet)")
    return uri
