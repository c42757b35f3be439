"""Pydantic request/response models of the serving HTTP API (they also make the OpenAPI docs).

Ids are accepted as strings or integers (JSON has both); they are matched against the
model's id maps, so ``"123"`` and ``123`` name the same numeric customer.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from serving.settings import LIMITS

Id = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.id_chars)] | Annotated[
    int, Field(ge=-(2**63), le=2**63 - 1)]
Name = Annotated[str, StringConstraints(max_length=LIMITS.text_chars)]
MAX_N = LIMITS.n
MAX_IDS = LIMITS.filter_ids


class Filters(BaseModel):
    """Business filters applied after scoring (all optional, all combined with AND)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    categories_in: list[Name] | None = Field(None, max_length=LIMITS.categories,
                                             description="keep only these categories")
    categories_out: list[Name] | None = Field(None, max_length=LIMITS.categories,
                                              description="drop these categories")
    price_min: float | None = Field(None, ge=0, description="lowest unit price kept")
    price_max: float | None = Field(None, ge=0, description="highest unit price kept")
    allow_items: list[Id] | None = Field(
        None, max_length=MAX_IDS, description="only these item ids may be recommended"
    )
    deny_items: list[Id] | None = Field(
        None, max_length=MAX_IDS, description="these item ids are never recommended"
    )

    @model_validator(mode="after")
    def _price_range(self) -> Filters:
        if self.price_min is not None and self.price_max is not None:
            if self.price_min > self.price_max:
                raise ValueError("filters.price_min must not exceed filters.price_max")
        return self


class Item(BaseModel):
    """One recommended item."""

    item_id: Id
    score: float
    name: str | None = Field(None, description="item name from the model's item table")
    price: float | None = Field(None, description="typical unit price from the item table")
    image: str | None = Field(None, description="image URL, when the item table has one")
    url: str | None = Field(None, description="product page URL, when the item table has one")
    reason: str | None = Field(None, description='e.g. "bought with X", "similar to Y"')
    variant: str | None = Field(None, description="interleaving: the variant that contributed it")


class RecommendResponse(BaseModel):
    """A served list, with what produced it."""

    items: list[Item]
    strategy: str = Field(description="personalised | folded_in | item_knn | popularity | ...")
    model_version: str
    variant: str
    experiment: str
    request_id: str
    warnings: list[str] = Field(default_factory=list)


class BatchEntry(BaseModel):
    """One customer's list inside a batch response."""

    customer_id: Id
    items: list[Item]
    strategy: str
    variant: str


class BatchResponse(BaseModel):
    results: list[BatchEntry]
    model_version: str
    experiment: str
    request_id: str
    warnings: list[str] = Field(default_factory=list)


class ProfileResponse(BaseModel):
    customer_id: Id
    profile: dict
    model_version: str


class Pong(BaseModel):
    ok: bool = True
    n: int = 1


class ReloadResponse(BaseModel):
    reloaded: list[dict]
    failed: list[dict]
    workers: dict = Field(default_factory=dict,
                          description="workers that serve the new models, and those that do not yet")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a one-line message that names the field, the field, details."""

    error: str = Field(description='e.g. "n: Input should be less than or equal to 1000"')
    field: str | None = Field(None, description="the request field at fault, dotted")
    detail: list[dict] | None = Field(None, description="every validation error: loc, msg, type")


__all__ = [
    "Filters", "Item", "RecommendResponse", "BatchEntry", "BatchResponse", "ProfileResponse",
    "ReloadResponse", "ErrorResponse", "Pong", "MAX_N", "MAX_IDS", "Id", "Name",
]
