"""The Patron BentoML service: one thin class over :mod:`serving.engine`.

    bentoml serve serving.service:Recommender          # or: patron serve --model URI|PATH

Environment: ``PATRON_MODEL_URI`` (default ``models:/patron@champion``, or an artifact path),
``PATRON_EXPERIMENTS`` (experiment config), ``PATRON_EXPOSURE_LOG`` (JSONL path; unset = no
log), ``PATRON_EXPOSURE_URL`` (``postgresql://...``: the exposure table shared by replicas,
:mod:`serving.exposure_pg`; wins over the file log), ``PATRON_EXPOSURE_SECRET``, ``PATRON_ADMIN_TOKEN`` (enables ``/admin/reload``),
``PATRON_WORKERS``, ``PATRON_GC_MODE`` (``freeze``: default, or ``default``) and
``PATRON_GC_THRESHOLDS`` (e.g. ``50000,50,100``), ``PATRON_ACCESS_LOG=1`` (BentoML's
per-request access log: off by default, it costs about a third of a trivial request's CPU),
``PATRON_HTTP_METRICS=0`` (BentoML's request histograms), ``PATRON_RUN_DIR`` (the private
folder where workers signal reloads) and the limits ``PATRON_MAX_*`` of
:class:`serving.settings.Limits`. Every request passes :class:`serving.guard.RequestGuard`
first (content type, size, strict JSON, the input model, the admin token).

Endpoints (POST, JSON body = keyword arguments): ``/recommend``, ``/recommend_batch``,
``/similar_items``, ``/cross_sell``, ``/up_sell``, ``/customer_profile``, ``/admin/reload``;
GET ``/info``, ``/widget``; BentoML's ``/healthz``, ``/readyz``, ``/metrics`` and the
OpenAPI docs at ``/``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from pydantic import Field
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from serving import compat
from serving.engine import Engine, Result
from serving.exposure import ExposureLog, ExposureLogError
from serving.guard import RequestGuard, admin_denied
from serving.interleave import team_draft
from serving.loader import ModelLoadError, check_reload_uri
from serving.metrics import get_metrics
from serving.profiles import MAX_DUE_ITEMS, profile_for
from serving.schemas import (
    MAX_N,
    BatchResponse,
    Filters,
    Id,
    Name,
    Pong,
    ProfileResponse,
    RecommendResponse,
    ReloadResponse,
)
from serving.settings import ServingSettings
from serving.state import ServingState
from serving.variants import assign

log = logging.getLogger("patron.serving")
WIDGET_DIR = Path(__file__).parent / "widget"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in the log
SETTINGS = ServingSettings.from_env()  # read once per worker process
LIMITS = SETTINGS.limits
compat.apply(LIMITS.header_seconds)
N = Annotated[int, Field(ge=1, le=MAX_N, description=f"list length, 1..{MAX_N}")]
ContextItems = Annotated[list[Id], Field(max_length=LIMITS.context_items)]
ItemIds = Annotated[list[Id], Field(min_length=1, max_length=LIMITS.item_ids,
                                    description="the item(s) the list is about")]


def _item_ids(item_ids, item_id):
    """One shape for every item endpoint: ``item_ids`` (a list), or ``item_id`` for one."""
    if (item_ids is None) == (item_id is None):
        return _error(400, "item_ids: give item_ids (a list) or item_id (one), not both or neither",
                      "item_ids")
    return item_ids if item_ids is not None else [item_id]

_STATE: ServingState | None = None  # this worker's state, for the plain starlette routes
_EXPOSURE: ExposureLog | None = None  # this worker's exposure log, for /info


# ---- logging: client errors in one line, no traceback ------------------------------
class _ClientErrorFilter(logging.Filter):
    """BentoML logs every refused request with a traceback; keep one line for 4xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        status = getattr(getattr(exc, "error_code", None), "value", 500)
        if isinstance(exc, ValidationError) or (isinstance(status, int) and status < 500):
            record.msg = f"{record.getMessage()}: client error: {str(exc).splitlines()[0]}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(_ClientErrorFilter())


def configure_gc() -> dict:
    """``PATRON_GC_MODE=freeze`` (default): move start-up objects (the model) out of the
    collector's reach and raise thresholds; ``default``: leave Python's GC alone."""
    mode = os.environ.get("PATRON_GC_MODE", "freeze").strip().lower()
    if mode == "freeze":
        th = os.environ.get("PATRON_GC_THRESHOLDS", "50000,50,100")
        gc.collect()
        gc.freeze()
        gc.set_threshold(*(int(x) for x in th.split(",")))
    return {"mode": mode, "thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _ctx_error(ctx, status: int, message: str, field: str | None = None) -> JSONResponse:
    """An error from an api that takes ``ctx`` (BentoML copies ctx's status onto the reply)."""
    ctx.response.status_code = status
    return _error(status, message, field)


def _field_of(message: str) -> str | None:
    head = message.split(":", 1)[0]
    return head if head and " " not in head else None


_RID_PREFIX = os.urandom(4).hex()  # new in each worker process (re-made after a fork)
_RID_COUNT = itertools.count()


def _rid() -> str:
    """A request id unique across workers and restarts: random prefix + counter (16 hex)."""
    return f"{_RID_PREFIX}{next(_RID_COUNT) & 0xFFFFFFFF:08x}"


def _new_rid_prefix() -> None:
    global _RID_PREFIX
    _RID_PREFIX = os.urandom(4).hex()


os.register_at_fork(after_in_child=_new_rid_prefix)


def _ok(body: dict) -> Response:
    """A 200 JSON reply: ``body`` has the fields of the api's response model, in order,
    with values of their types, so pydantic-core writes the bytes the model would (the
    OpenAPI schema still comes from the annotation). One body with a Content-Length instead
    of BentoML's chunked reply, and no model objects built per item."""
    return Response(to_json(body), media_type="application/json")


def _items(engine: Engine, res: Result, variants: list[str] | None = None) -> list[dict]:
    """The :class:`~serving.schemas.Item` fields of a result's items, as dicts."""
    ids = engine.item_ids[res.items].tolist()
    scores = np.asarray(res.scores, dtype=np.float64).tolist()
    names, prices, images, links = engine.names, engine.price_list, engine.images, engine.links
    reasons = res.reasons
    nr = len(reasons)
    return [
        {
            "item_id": i,
            "score": s,
            "name": names[j],
            "price": prices[j],
            "image": images[j],
            "url": links[j],
            "reason": reasons[k] if k < nr else None,
            "variant": variants[k] if variants else None,
        }
        for k, (i, s, j) in enumerate(zip(ids, scores, res.items.tolist(), strict=True))
    ]


# ---- plain routes: /info, /widget ----------------------------------------------------
async def _info(request: Request) -> JSONResponse:
    if _STATE is None:
        return _error(503, "service is starting")
    admin = admin_denied(request.headers, SETTINGS.admin_token) is None
    info = _STATE.info(admin=admin)
    info["limits"] = LIMITS.model_dump()
    info["gc"] = {"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}
    if admin:
        info["pid"] = os.getpid()
    if _EXPOSURE is not None:  # this worker's group commits: records per fsync / transaction
        info["exposure"] = {"records": _EXPOSURE.records, "commits": _EXPOSURE.batches}
    return JSONResponse(info)


async def _widget(_: Request) -> FileResponse:
    return FileResponse(WIDGET_DIR / "index.html", media_type="text/html")


async def _widget_js(_: Request) -> FileResponse:
    return FileResponse(WIDGET_DIR / "patron-widget.js", media_type="text/javascript")


extra_app = Starlette(
    routes=[
        Route("/info", _info, methods=["GET"]),
        Route("/widget", _widget, methods=["GET"]),
        Route("/widget/patron-widget.js", _widget_js, methods=["GET"]),
    ]
)


@bentoml.service(
    name="patron",
    workers=SETTINGS.workers,
    traffic={"timeout": LIMITS.request_seconds},
    http={"host": os.environ.get("PATRON_HOST", "127.0.0.1")},  # plain `bentoml serve` too
    logging={"access": {"enabled": os.environ.get("PATRON_ACCESS_LOG", "0") != "0"}},
    metrics={"enabled": os.environ.get("PATRON_HTTP_METRICS", "1") != "0"},
    # OpenTelemetry spans cost ~0.3 ms a request even when not sampled: off unless asked
    tracing={} if os.environ.get("PATRON_TRACING", "0") != "0" else {"excluded_urls": [".*"]},
)
@bentoml.asgi_app(extra_app, path="/", name="patron-extra")
class Recommender:
    """Recommendations for repeat customers: personalised lists, cross-sell, up-sell."""

    def __init__(self) -> None:
        global _STATE, _EXPOSURE
        import threadpoolctl

        threadpoolctl.threadpool_limits(1)  # one request = one core; workers scale out
        compat.fast_api_callers(self, Recommender)  # the Service object
        self.settings = SETTINGS
        self.state = ServingState(self.settings)
        _STATE = self.state
        self.exposure: ExposureLog | None = None
        if self.settings.exposure_url:  # replicas share one PostgreSQL table
            from serving.exposure_pg import PgExposureLog

            self.exposure = PgExposureLog(self.settings.exposure_url)
        elif self.settings.exposure_log:
            self.exposure = ExposureLog(self.settings.exposure_log)
        _EXPOSURE = self.exposure
        self.metrics = get_metrics()
        self.gc_info: dict = {}
        self._loader = threading.Thread(target=self._initial_load, name="patron-load", daemon=True)
        self._loader.start()

    def _initial_load(self) -> None:
        ok, failed = self.state.load()
        if not self.state.ready:
            log.error("no model could be loaded; /readyz stays 503: %s", failed)
        elif self.exposure is not None:
            from serving.keys import weak_id_warning

            for engine in self.state.engines.values():
                warning = weak_id_warning(engine.art.customers.ids)
                if warning:
                    log.warning("%s (exposure keys of %s)", warning, engine.version)
                    break
        self.gc_info = configure_gc()
        self.state.watch_reloads()

    def __is_ready__(self) -> bool:
        return self.state.ready

    @bentoml.on_shutdown
    def _close(self) -> None:
        if self.exposure is not None:
            self.exposure.close()

    # ---- helpers ------------------------------------------------------------------
    def _refuse(self, endpoint: str, status: int, message: str) -> JSONResponse:
        self.metrics.client_errors.labels(endpoint=endpoint).inc()
        return _error(status, message, _field_of(message))

    def _route(self, experiment: str, customer_id, rid: str):
        """(experiment name, spec, variant name) for this request."""
        name, spec = self.state.resolve(experiment)
        if spec.type == "interleave":
            return name, spec, "interleaved"
        key = str(customer_id) if customer_id is not None else rid
        return name, spec, assign(name, spec, key)

    async def _expose(self, records: list[dict]) -> None:
        if self.exposure is None or not records:
            return
        if len(records) == 1:
            await self.exposure.write_async(records[0])
        else:
            import asyncio

            await asyncio.gather(*(self.exposure.write_async(r) for r in records))

    def _record(self, endpoint, rid, exp, variant, version, strategy, customer_id, ids, teams=None):
        rec = {
            "ts": time.time(),
            "request_id": rid,
            "endpoint": endpoint,
            "experiment": exp,
            "variant": variant,
            "model_version": version,
            "strategy": strategy,
            "customer_key": self.exposure.key(customer_id) if self.exposure else None,
            "items": ids,
        }
        if teams is not None:
            rec["teams"] = teams
        return rec

    async def _serve_list(
        self, endpoint: str, experiment: str, customer_id, compute
    ) -> RecommendResponse | JSONResponse:
        """Route to a variant, run ``compute(engine) -> Result``, log exposure, respond."""
        if not self.state.ready:
            return _error(503, "no model loaded yet")
        rid = _rid()
        try:
            exp, spec, variant = self._route(experiment, customer_id, rid)
            if spec.type == "interleave":
                (va, sa), (vb, sb) = spec.variants.items()
                ea, eb = self.state.engines[sa.model], self.state.engines[sb.model]
                ra, rb = compute(ea), compute(eb)
                items, teams, version, strategy, warnings = self._interleave(
                    rid, (va, ea, ra), (vb, eb, rb)
                )
            else:
                engine = self.state.engine(spec, variant)
                res = compute(engine)
                items, teams = _items(engine, res), None
                version, strategy, warnings = engine.version, res.strategy, res.warnings
        except KeyError as exc:
            return self._refuse(endpoint, 400, str(exc.args[0]) if exc.args else str(exc))
        if warnings and any(
            w.startswith(("customer_id: unknown", "context_items: unknown", "item_ids: unknown"))
            for w in warnings
        ):
            self.metrics.unknown_ids.labels(endpoint=endpoint, kind="id").inc()
        ids = [it["item_id"] for it in items]
        try:
            await self._expose(
                [self._record(endpoint, rid, exp, variant, version, strategy, customer_id, ids, teams)]
            )
        except ExposureLogError as exc:
            return _error(503, f"exposure log unavailable: {exc}")
        self.metrics.served(endpoint, strategy, variant)
        return _ok({  # RecommendResponse
            "items": items, "strategy": strategy, "model_version": version, "variant": variant,
            "experiment": exp, "request_id": rid, "warnings": list(warnings),
        })

    def _interleave(self, rid, a, b):
        (va, ea, ra), (vb, eb, rb) = a, b
        la, lb = ea.item_ids[ra.items].tolist(), eb.item_ids[rb.items].tolist()
        n = max(len(la), len(lb))
        ids, teams = team_draft(la, lb, n, seed=rid, names=(va, vb))
        by = {va: (ea, ra, {x: k for k, x in enumerate(la)}),
              vb: (eb, rb, {x: k for k, x in enumerate(lb)})}
        items = []
        for i, t in zip(ids, teams, strict=True):
            _, r, pos = by[t]
            k = pos[i]
            e = by[t][0]
            j = int(r.items[k])
            items.append({"item_id": i, "score": float(r.scores[k]), "name": e.names[j],
                          "price": e.price_list[j], "image": e.images[j], "url": e.links[j],
                          "reason": r.reasons[k], "variant": t})
        version = f"{va}={ea.version},{vb}={eb.version}"
        strategy = ra.strategy if ra.strategy == rb.strategy else f"{ra.strategy}|{rb.strategy}"
        warnings = list(dict.fromkeys(ra.warnings + rb.warnings))
        return items, teams, version, strategy, warnings

    # ---- endpoints ----------------------------------------------------------------
    @bentoml.api
    async def recommend(
        self,
        customer_id: Id | None = None,
        n: N = 10,
        exclude_bought: bool = True,
        context_items: ContextItems = Field(default_factory=list),
        filters: Filters | None = None,
        experiment: Name = "default",
        stage_aware: bool = True,
    ) -> RecommendResponse:
        """Top-n items for a customer; context items (cart, viewed) refine the list or, for
        an unknown customer, stand in for a history; no customer and no context: popular.
        ``stage_aware`` (default): a half-asleep or sleeping customer (NES S2/S3 in the
        model's customer tables) without context items gets up to half the list (at least
        one) from their own favourites first, even with ``exclude_bought`` (which still
        applies to the rest); strategy ``winback``."""
        return await self._serve_list(
            "recommend", experiment, customer_id,
            lambda e: e.recommend(
                customer_id, n, exclude_bought=exclude_bought,
                context_items=context_items, filters=filters, stage_aware=stage_aware,
            ),
        )

    @bentoml.api
    async def recommend_batch(
        self,
        customer_ids: Annotated[list[Id], Field(min_length=1, max_length=LIMITS.batch_customers)],
        n: N = 10,
        exclude_bought: bool = True,
        filters: Filters | None = None,
        experiment: Name = "default",
        stage_aware: bool = True,
    ) -> BatchResponse:
        """Lists for many customers at once: each the list ``recommend`` gives that customer
        (without context items); cached lists are read, the rest scored in blocks of matrix
        products per variant. At most ``PATRON_MAX_BATCH_CUSTOMERS`` ids and
        ``PATRON_MAX_BATCH_ITEMS`` customers x n per call (413 above it)."""
        if not self.state.ready:
            return _error(503, "no model loaded yet")
        rid = _rid()
        try:
            exp, spec = self.state.resolve(experiment)
        except KeyError as exc:
            return self._refuse("recommend_batch", 400, str(exc.args[0]))
        if spec.type == "interleave":
            return self._refuse(
                "recommend_batch", 400,
                f"experiment: {exp!r} interleaves; use recommend for interleaved lists",
            )
        groups: dict[str, list[int]] = {}
        for pos, c in enumerate(customer_ids):
            groups.setdefault(assign(exp, spec, str(c)), []).append(pos)
        entries: list[dict | None] = [None] * len(customer_ids)
        records, warnings, versions = [], [], {}
        for variant, positions in groups.items():
            engine = self.state.engine(spec, variant)
            versions[variant] = engine.version
            ids = [customer_ids[p] for p in positions]
            results, warn = engine.recommend_batch(
                ids, n, exclude_bought=exclude_bought, filters=filters, stage_aware=stage_aware
            )
            warnings += warn
            for p, c, res in zip(positions, ids, results, strict=True):
                items = _items(engine, res)
                entries[p] = {  # BatchEntry
                    "customer_id": c, "items": items, "strategy": res.strategy,
                    "variant": variant,
                }
                records.append(self._record(
                    "recommend_batch", rid, exp, variant, engine.version, res.strategy, c,
                    [it["item_id"] for it in items],
                ))
                self.metrics.served("recommend_batch", res.strategy, variant)
        try:
            await self._expose(records)
        except ExposureLogError as exc:
            return _error(503, f"exposure log unavailable: {exc}")
        version = next(iter(versions.values())) if len(versions) == 1 else ",".join(
            f"{k}={v}" for k, v in sorted(versions.items())
        )
        return _ok({  # BatchResponse
            "results": entries, "model_version": version, "experiment": exp,
            "request_id": rid, "warnings": list(dict.fromkeys(warnings)),
        })

    @bentoml.api
    async def similar_items(
        self,
        item_ids: ItemIds | None = None,
        item_id: Id | None = None,
        n: N = 10,
        filters: Filters | None = None,
        experiment: Name = "default",
        customer_id: Id | None = None,
    ) -> RecommendResponse:
        """Items most similar to any of ``item_ids`` (in the model's item space); ``item_id``
        is accepted for one item."""
        ids = _item_ids(item_ids, item_id)
        if isinstance(ids, JSONResponse):
            return ids
        return await self._serve_list(
            "similar_items", experiment, customer_id,
            lambda e: e.similar(ids, n, filters=filters),
        )

    @bentoml.api
    async def cross_sell(
        self,
        item_ids: ItemIds | None = None,
        item_id: Id | None = None,
        n: N = 10,
        customer_id: Id | None = None,
        include_substitutes: bool = False,
        filters: Filters | None = None,
        experiment: Name = "default",
    ) -> RecommendResponse:
        """Complements of an item or basket (bought in the same orders far more often than
        chance); same-category substitutes left out unless asked; personalised with a
        customer. ``item_id`` is accepted for one item."""
        ids = _item_ids(item_ids, item_id)
        if isinstance(ids, JSONResponse):
            return ids
        return await self._serve_list(
            "cross_sell", experiment, customer_id,
            lambda e: e.cross_sell(
                ids, n, customer_id=customer_id,
                include_substitutes=include_substitutes, filters=filters,
            ),
        )

    @bentoml.api
    async def up_sell(
        self,
        item_ids: ItemIds | None = None,
        item_id: Id | None = None,
        n: N = 10,
        customer_id: Id | None = None,
        filters: Filters | None = None,
        experiment: Name = "default",
    ) -> RecommendResponse:
        """Same category, higher price tier, similar to the item; never a cheaper one.
        ``item_id`` is accepted for one item."""
        ids = _item_ids(item_ids, item_id)
        if isinstance(ids, JSONResponse):
            return ids
        return await self._serve_list(
            "up_sell", experiment, customer_id,
            lambda e: e.up_sell(ids, n, customer_id=customer_id, filters=filters),
        )

    @bentoml.api
    async def customer_profile(
        self,
        customer_id: Id,
        max_items: Annotated[int, Field(ge=1, le=MAX_DUE_ITEMS)] = 10,
    ) -> ProfileResponse:
        """RFM values, scores and segment (EN + ZH), NES stage and cycle, and up to
        ``max_items`` items due for replenishment, from the customer tables that training
        stores in the model (as of ``as_of``, the end of the training period); 404 for a
        customer they do not know or a model without them (the message says which)."""
        if not self.state.ready:
            return _error(503, "no model loaded yet")
        _, spec = self.state.resolve(None)
        engine = next(iter(self.state.engines[v.model] for v in spec.variants.values()))
        try:
            profile = profile_for(engine, customer_id, max_items)
        except KeyError as exc:
            return self._refuse("customer_profile", 404, str(exc.args[0]))
        except LookupError as exc:
            return self._refuse("customer_profile", 404, str(exc))
        return ProfileResponse(customer_id=customer_id, profile=profile,
                               model_version=engine.version)

    @bentoml.api
    async def ping(self, n: int = 1) -> Pong:
        """A trivial api through the same BentoML stack: the HTTP cost of a call."""
        return Pong(n=n)

    @bentoml.api(route="/admin/reload")
    async def admin_reload(
        self,
        ctx: bentoml.Context,
        model_uri: Annotated[str, Field(max_length=4096)] | None = None,
        experiment: Name | None = None,
        variant: Name | None = None,
    ) -> ReloadResponse:
        """Reload the models (re-resolving registry aliases); with ``model_uri`` (a
        ``models:/`` URI or an absolute artifact path), serve that model for
        ``experiment``/``variant`` (default: the default experiment, all of its variants).
        Needs ``Authorization: Bearer $PATRON_ADMIN_TOKEN``. A model that fails to load or
        check leaves the old one serving (409, and ``/info``'s ``error`` says why). The answer
        comes when every worker serves the new models (``workers``)."""
        import anyio.to_thread

        denied = admin_denied(ctx.request.headers, self.settings.admin_token)
        if denied:
            return _ctx_error(ctx, *denied)
        if model_uri is not None:
            if self.state.config is None:
                return _ctx_error(ctx, 503, "no model loaded yet")
            try:
                model_uri = check_reload_uri(model_uri)
            except ModelLoadError as exc:
                return _ctx_error(ctx, 400, str(exc), "model_uri")
            try:
                exp, spec = self.state.resolve(experiment)
            except KeyError as exc:
                return _ctx_error(ctx, 400, str(exc.args[0]), "experiment")
            names = [variant] if variant else list(spec.variants)
            if variant and variant not in spec.variants:
                return _ctx_error(ctx, 400, f"variant: unknown variant {variant!r} of {exp!r}", "variant")
            old = dict(self.state.overrides)
            for v in names:
                self.state.overrides[f"{exp}/{v}"] = model_uri
        else:
            old = dict(self.state.overrides)
        ok, failed = await anyio.to_thread.run_sync(self.state.load)
        if failed:
            self.state.overrides = old
            self.metrics.reloads.labels(outcome="failed").inc()
            ctx.response.status_code = 409 if self.state.ready else 503
            return JSONResponse(
                {"reloaded": ok, "failed": failed, "error": "reload failed; old model serving"},
                status_code=ctx.response.status_code,
            )
        workers = await anyio.to_thread.run_sync(self.state.publish_reload)
        self.metrics.reloads.labels(outcome="ok").inc()
        return ReloadResponse(reloaded=ok, failed=failed, workers=workers)


compat.strict_inputs(Recommender)
compat.known_routes(Recommender)
Recommender.add_asgi_middleware(RequestGuard, service=Recommender, settings=lambda: SETTINGS)
