"""Experiments and variants: which model a customer sees, by a stable hash.

An experiment config (JSON or YAML, env ``PATRON_EXPERIMENTS``)::

    experiments:
      default:                 # the experiment a request gets when it names none
        type: split            # split (A/B/n by weight) or interleave (two variants)
        salt: home-2026-11     # change it to reshuffle customers
        variants:
          control:   {model: "models:/patron@champion", weight: 0.5}
          treatment: {model: "models:/patron@challenger", weight: 0.5}

A customer's variant is ``sha256(salt ":" customer_id)`` read as a number in [0, 1) and
placed on the cumulative weights: the same customer always gets the same variant while the
salt and weights stay, and the split follows the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.errors import PatronError

__all__ = [
    "VariantSpec", "ExperimentSpec", "ExperimentsConfig", "ExperimentConfigError",
    "bucket", "assign", "load_experiments", "single_model_config", "DEFAULT_EXPERIMENT",
]

DEFAULT_EXPERIMENT = "default"


class ExperimentConfigError(PatronError):
    """The experiment config file is missing or invalid."""


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model URI: models:/NAME@alias, models:/NAME/N or a path")
    weight: float = Field(1.0, ge=0, description="share of customers (normalised)")


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["split", "interleave"] = "split"
    salt: str = Field("", description="hash salt; defaults to the experiment name")
    variants: dict[str, VariantSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        if self.type == "interleave" and len(self.variants) != 2:
            raise ValueError("an interleave experiment needs exactly two variants")
        if self.type == "split" and sum(v.weight for v in self.variants.values()) <= 0:
            raise ValueError("variant weights must not all be zero")
        return self


class ExperimentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiments: dict[str, ExperimentSpec] = Field(min_length=1)

    def resolve(self, name: str | None) -> tuple[str, ExperimentSpec]:
        """The experiment called ``name``; ``default`` (or None) falls back to the first."""
        if name is None or (name == DEFAULT_EXPERIMENT and name not in self.experiments):
            name = next(iter(self.experiments))
        spec = self.experiments.get(name)
        if spec is None:
            raise KeyError(
                f"experiment: unknown experiment {name!r}; known: {sorted(self.experiments)}"
            )
        return name, spec

    def model_uris(self) -> list[str]:
        out: list[str] = []
        for spec in self.experiments.values():
            for v in spec.variants.values():
                if v.model not in out:
                    out.append(v.model)
        return out


def bucket(salt: str, key: str) -> float:
    """A stable number in [0, 1) for (salt, key)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(name: str, spec: ExperimentSpec, key: str) -> str:
    """The variant of ``key`` (a customer id as text) in a split experiment."""
    names = list(spec.variants)
    if len(names) == 1:
        return names[0]
    total = sum(v.weight for v in spec.variants.values())
    u = bucket(spec.salt or name, key) * total
    acc = 0.0
    for n in names:
        acc += spec.variants[n].weight
        if u < acc:
            return n
    return names[-1]


def single_model_config(uri: str) -> ExperimentsConfig:
    """One experiment ``default`` with one variant ``default`` serving ``uri``."""
    return ExperimentsConfig(
        experiments={DEFAULT_EXPERIMENT: ExperimentSpec(variants={"default": VariantSpec(model=uri)})}
    )


def load_experiments(path: str | os.PathLike) -> ExperimentsConfig:
    """Read and validate an experiment config (``.json``, or YAML otherwise)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ExperimentConfigError(f"{p}: cannot read experiment config ({exc})") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise ExperimentConfigError(f"{p}: not valid JSON/YAML ({exc})") from exc
    try:
        cfg = ExperimentsConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ExperimentConfigError(f"{p}: {loc}: {first['msg']}") from exc
    for spec in cfg.experiments.values():  # a relative model path is relative to the file
        for v in spec.variants.values():
            if not v.model.startswith("models:/") and not Path(v.model).is_absolute():
                v.model = str((p.resolve().parent / v.model).resolve())
    return cfg
