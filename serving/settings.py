"""The service's settings, read once from ``PATRON_*`` environment variables, and its limits.

Every limit a request is held to is named here (and in the README's Serving section); the
request guard (:mod:`serving.guard`) and the api schemas enforce them before any work
starts, with the limit in the error message.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Limits", "ServingSettings", "LIMITS", "DEFAULT_URI"]

DEFAULT_URI = "models:/patron@champion"


class Limits(BaseModel):
    """What one request may ask for (``PATRON_MAX_<FIELD>`` overrides each)."""

    model_config = ConfigDict(frozen=True)

    body_bytes: int = Field(1 << 20, description="request body (413 above it)")
    n: int = Field(1000, description="list length per customer")
    batch_customers: int = Field(1000, description="customer ids per recommend_batch call")
    batch_items: int = Field(20_000, description="customers x n per recommend_batch call (413)")
    context_items: int = Field(200, description="cart / viewed items per recommend call")
    item_ids: int = Field(200, description="item ids per cross_sell call")
    filter_ids: int = Field(10_000, description="ids in filters.allow_items / deny_items")
    categories: int = Field(1_000, description="names in filters.categories_in / _out")
    id_chars: int = Field(128, description="characters in one customer or item id")
    text_chars: int = Field(200, description="characters in an experiment, variant or category name")
    header_seconds: float = Field(10.0, description="time to send the request headers")
    body_seconds: float = Field(10.0, description="time to send the request body (408)")
    request_seconds: float = Field(10.0, description="time to answer one request")

    @classmethod
    def from_env(cls, env: dict | None = None) -> Limits:
        env = os.environ if env is None else env
        values = {}
        for name, f in cls.model_fields.items():
            raw = env.get(f"PATRON_MAX_{name.upper()}")
            if raw not in (None, ""):
                values[name] = f.annotation(raw)
        return cls(**values)


LIMITS = Limits.from_env()
"""The limits of this process (the schemas are built with them at import)."""


def _token(value: str | None) -> str | None:
    """A token of whitespace is no token."""
    value = (value or "").strip()
    return value or None


class ServingSettings(BaseModel):
    """Everything the service reads from the environment, read once per worker."""

    model_config = ConfigDict(frozen=True)

    model_uri: str = DEFAULT_URI
    experiments_path: str | None = None
    exposure_log: str | None = None
    exposure_url: str | None = None
    admin_token: str | None = None
    cache_dir: str | None = None
    workers: int = 1
    run_dir: str = ""
    limits: Limits = Field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: dict | None = None) -> ServingSettings:
        env = os.environ if env is None else env
        return cls(
            model_uri=env.get("PATRON_MODEL_URI") or bundled_model() or DEFAULT_URI,
            experiments_path=env.get("PATRON_EXPERIMENTS") or None,
            exposure_log=env.get("PATRON_EXPOSURE_LOG") or None,
            exposure_url=env.get("PATRON_EXPOSURE_URL") or None,
            admin_token=_token(env.get("PATRON_ADMIN_TOKEN")),
            cache_dir=env.get("PATRON_MODEL_CACHE") or None,
            workers=int(env.get("PATRON_WORKERS") or 1),
            run_dir=env.get("PATRON_RUN_DIR") or str(default_run_dir()),
            limits=Limits.from_env(env),
        )


BUNDLED = Path(__file__).resolve().parents[1] / "bundled_model"


def bundled_model() -> str | None:
    """The model ``patron build`` packed beside the service code (a bento), if any: it is
    served when ``PATRON_MODEL_URI`` is not set, so a bento needs no registry."""
    return str(BUNDLED) if (BUNDLED / "manifest.json").is_file() else None


def default_run_dir() -> Path:
    """Where a server's workers talk to each other: a private folder of this user
    (``$XDG_RUNTIME_DIR/patron``, else ``~/.cache/patron/run``), never the shared ``/tmp``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "patron"
    return Path.home() / ".cache" / "patron" / "run"
