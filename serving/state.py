"""What one worker serves: the experiment config and one :class:`Engine` per model URI.

Engines are swapped atomically: a reload builds and checks every new engine beside the
old ones, then replaces the whole mapping with one assignment, so a request (which reads
the mapping once) sees either the old or the new models, never a mix or a half-loaded one.
A URI that fails to load or check keeps its old engine.

Several workers: the worker that gets ``/admin/reload`` reloads and then bumps a small
signal file (``PATRON_RELOAD_SIGNAL``, default ``$TMPDIR/patron-reload-<server pid>.json``);
every worker watches it and reloads the same models within about a second.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from features.errors import PatronError
from serving.engine import Engine
from serving.loader import DEFAULT_URI, load_engine
from serving.variants import (
    ExperimentsConfig,
    ExperimentSpec,
    load_experiments,
    single_model_config,
)

__all__ = ["ServingState", "Settings"]

log = logging.getLogger("patron.serving")


@dataclass
class Settings:
    """Service settings read from the environment."""

    model_uri: str = DEFAULT_URI
    experiments_path: str | None = None
    exposure_log: str | None = None
    admin_token: str | None = None
    reload_signal: str = ""
    cache_dir: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        signal = env.get("PATRON_RELOAD_SIGNAL") or str(
            Path(tempfile.gettempdir()) / f"patron-reload-{os.getppid()}.json"
        )
        return cls(
            model_uri=env.get("PATRON_MODEL_URI") or DEFAULT_URI,
            experiments_path=env.get("PATRON_EXPERIMENTS") or None,
            exposure_log=env.get("PATRON_EXPOSURE_LOG") or None,
            admin_token=env.get("PATRON_ADMIN_TOKEN") or None,
            reload_signal=signal,
            cache_dir=env.get("PATRON_MODEL_CACHE") or None,
        )


@dataclass
class ServingState:
    settings: Settings
    config: ExperimentsConfig | None = None
    engines: dict[str, Engine] = field(default_factory=dict)
    infos: dict[str, dict] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)  # "exp/variant" -> uri
    error: str | None = None
    loaded_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _signal_mtime: int = 0

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
            missing = [u for u in uris if u not in new_engines]
            if missing:
                # the config names a model that never loaded: keep serving the old config
                if self.config is None:
                    self.error = "; ".join(f["error"] for f in failed) or "no model loaded"
                return ok, failed
            # one assignment each: requests read self.config then self.engines[uri];
            # engines are only ever added or replaced, so an old config still resolves
            self.engines = new_engines
            self.infos = new_infos
            self.config = cfg
            self.error = None if not failed else self.error
            self.loaded_at = time.time()
            return ok, failed

    def resolve(self, experiment: str | None) -> tuple[str, ExperimentSpec]:
        return self.config.resolve(experiment)

    def engine(self, spec: ExperimentSpec, variant: str) -> Engine:
        return self.engines[spec.variants[variant].model]

    # ---- reload signalling between workers ------------------------------------------
    def publish_reload(self) -> None:
        path = Path(self.settings.reload_signal)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"ts": time.time(), "overrides": self.overrides}))
        os.replace(tmp, path)
        self._signal_mtime = path.stat().st_mtime_ns

    def watch_reloads(self, interval: float = 0.5) -> threading.Thread:
        path = Path(self.settings.reload_signal)
        try:
            self._signal_mtime = path.stat().st_mtime_ns
        except OSError:
            self._signal_mtime = 0

        def loop() -> None:
            while True:
                time.sleep(interval)
                try:
                    m = path.stat().st_mtime_ns
                except OSError:
                    continue
                if m == self._signal_mtime:
                    continue
                self._signal_mtime = m
                try:
                    data = json.loads(path.read_text())
                    self.overrides = dict(data.get("overrides", {}))
                except (OSError, ValueError):
                    continue
                log.info("reload signalled by another worker")
                self.load()

        t = threading.Thread(target=loop, name="patron-reload-watch", daemon=True)
        t.start()
        return t

    def info(self) -> dict:
        cfg = self.config
        return {
            "ready": self.ready,
            "error": self.error,
            "loaded_at": self.loaded_at,
            "experiments": cfg.model_dump() if cfg else None,
            "models": list(self.infos.values()) if cfg is None else [
                self.infos[u] for u in cfg.model_uris() if u in self.infos
            ],
        }
