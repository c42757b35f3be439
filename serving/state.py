"""What one worker serves: the experiment config and one :class:`Engine` per model URI.

Engines are swapped atomically: a reload builds and checks every new engine beside the
old ones, then replaces the whole mapping with one assignment, so a request (which reads
the mapping once) sees either the old or the new models, never a mix or a half-loaded one.
A URI that fails to load or check keeps its old engine, and ``error`` says why until the
next good load.

Several workers: the worker that gets ``/admin/reload`` reloads, then signals the others
through :class:`serving.reload_signal.ReloadChannel` (a private folder, signals signed with
the admin token) and waits until they serve the new models too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from features.errors import PatronError
from serving.engine import Engine
from serving.loader import load_engine
from serving.reload_signal import ReloadChannel, UnsafeRunDir
from serving.settings import ServingSettings
from serving.variants import (
    ExperimentsConfig,
    ExperimentSpec,
    load_experiments,
    single_model_config,
)

__all__ = ["ServingState", "Settings"]

log = logging.getLogger("patron.serving")
Settings = ServingSettings  # the name the tests and older code use


@dataclass
class ServingState:
    settings: Settings
    config: ExperimentsConfig | None = None
    engines: dict[str, Engine] = field(default_factory=dict)
    infos: dict[str, dict] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)  # "exp/variant" -> uri
    error: str | None = None
    loaded_at: float | None = None
    last_reload: dict | None = None
    channel: ReloadChannel | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.channel is None:
            try:
                self.channel = ReloadChannel(self.settings.run_dir, os.getppid(),
                                             self.settings.admin_token, self.settings.workers)
            except (UnsafeRunDir, OSError) as exc:  # serve, but never trust that folder
                log.error("reload signals between workers are off: %s (set PATRON_RUN_DIR to a "
                          "private folder)", exc)
                self.channel = ReloadChannel(self.settings.run_dir, os.getppid(), None)

    @property
    def ready(self) -> bool:
        return bool(self.engines) and self.config is not None

    def base_config(self) -> ExperimentsConfig:
        if self.settings.experiments_path:
            return load_experiments(self.settings.experiments_path)
        return single_model_config(self.settings.model_uri)

    def _apply_overrides(self, cfg: ExperimentsConfig) -> ExperimentsConfig:
        if not self.overrides:
            return cfg
        cfg = cfg.model_copy(deep=True)
        for key, uri in self.overrides.items():
            exp, _, var = key.partition("/")
            if exp in cfg.experiments and var in cfg.experiments[exp].variants:
                cfg.experiments[exp].variants[var].model = uri
        return cfg

    # ---- loading --------------------------------------------------------------------
    def load(self, only: set[str] | None = None) -> tuple[list[dict], list[dict]]:
        """(Re)load models; returns (reloaded, failed). Never leaves a half-swapped state."""
        with self._lock:
            try:
                cfg = self._apply_overrides(self.base_config())
            except PatronError as exc:
                self.error = str(exc)
                return [], [{"uri": None, "error": str(exc)}]
            uris = cfg.model_uris()
            new_engines = dict(self.engines)
            new_infos = dict(self.infos)
            ok, failed = [], []
            for uri in uris:
                if only is not None and uri not in only and uri in self.engines:
                    continue
                t0 = time.perf_counter()
                try:
                    loaded = load_engine(uri, cache_dir=self.settings.cache_dir)
                except Exception as exc:  # keep the old engine; report the reason
                    msg = str(exc) if isinstance(exc, PatronError) else f"{type(exc).__name__}: {exc}"
                    log.error("model %s failed to load: %s", uri, msg)
                    failed.append({"uri": uri, "error": msg})
                    continue
                new_engines[uri] = loaded.engine
                info = dict(loaded.info, load_seconds=round(time.perf_counter() - t0, 3))
                new_infos[uri] = info
                ok.append({"uri": uri, "version": loaded.engine.version})
                log.info("model %s loaded: version %s", uri, loaded.engine.version)
            self.last_reload = {"at": time.time(), "ok": len(ok), "failed": len(failed)}
            if failed:
                self.error = "; ".join(f"{f['uri']}: {f['error']}" for f in failed)
            missing = [u for u in uris if u not in new_engines]
            if missing:
                # the config names a model that never loaded: keep serving the old config
                if self.config is None and not failed:
                    self.error = "no model loaded"
                return ok, failed
            # one assignment each: requests read self.config then self.engines[uri];
            # engines are only ever added or replaced, so an old config still resolves
            self.engines = new_engines
            self.infos = new_infos
            self.config = cfg
            if not failed:
                self.error = None
            self.loaded_at = time.time()
            return ok, failed

    def resolve(self, experiment: str | None) -> tuple[str, ExperimentSpec]:
        return self.config.resolve(experiment)

    def engine(self, spec: ExperimentSpec, variant: str) -> Engine:
        return self.engines[spec.variants[variant].model]

    # ---- reload signalling between workers ------------------------------------------
    def publish_reload(self, timeout: float = 60.0) -> dict:
        """Tell the other workers to load what this one now serves; wait until they do.
        Returns the workers' count (``expected``, ``ok``, ``failed``, ``waiting``)."""
        if not self.channel.enabled or self.settings.workers <= 1:
            return {"expected": 1, "ok": 1, "failed": 0, "waiting": 0}
        seq = self.channel.publish(dict(self.overrides))
        return self.channel.wait_acks(seq, timeout)

    def watch_reloads(self, interval: float | None = None) -> threading.Thread | None:
        def on_signal(overrides: dict) -> bool:
            self.overrides = overrides
            _, failed = self.load()
            return not failed

        kw = {} if interval is None else {"interval": interval}
        return self.channel.watch(on_signal, **kw)

    def info(self, admin: bool = False) -> dict:
        """What this worker serves. Without ``admin`` (the admin token): no server paths,
        model URIs that are paths, data sources or error details."""
        cfg = self.config
        models = list(self.infos.values()) if cfg is None else [
            self.infos[u] for u in cfg.model_uris() if u in self.infos]
        if admin:
            return {"ready": self.ready, "error": self.error, "loaded_at": self.loaded_at,
                    "last_reload": self.last_reload,
                    "experiments": cfg.model_dump() if cfg else None, "models": models}
        experiments = None if cfg is None else {
            name: {"type": spec.type, "variants": {v: {"weight": vs.weight} for v, vs in spec.variants.items()}}
            for name, spec in cfg.experiments.items()}
        return {
            "ready": self.ready,
            "error": None if self.error is None else
            "a model failed to load; the details are in /info with the admin token",
            "loaded_at": self.loaded_at,
            "experiments": experiments,
            "models": [_public_model(m) for m in models],
        }


PUBLIC_MODEL_FIELDS = ("version", "model_name", "kind", "created_at", "n_customers", "n_items",
                       "has_item_table", "has_cross_sell", "tables", "registry_name", "alias",
                       "registry_version", "load_seconds")
PUBLIC_DATA_FIELDS = ("rows", "customers", "items", "span")


def _public_model(info: dict) -> dict:
    out = {k: info[k] for k in PUBLIC_MODEL_FIELDS if k in info}
    data = info.get("data") or {}
    out["data"] = {k: data[k] for k in PUBLIC_DATA_FIELDS if k in data}
    tables = info.get("customer_tables") or {}
    out["customer_tables"] = {"reference_date": tables.get("reference_date")} if tables else None
    return out
