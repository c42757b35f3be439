"""The request guard: what every API request passes before BentoML or Patron work on it.

An ASGI middleware in front of the api routes (``POST /recommend`` ...):

1. ``/admin/*``: the admin token first (403 when admin is disabled, 401 when wrong), before
   anything of the request is read;
2. ``Content-Type: application/json`` (415 otherwise: multipart, text, XML ... are never
   parsed as JSON);
3. the body within :attr:`~serving.settings.Limits.body_bytes` (413, by ``Content-Length``
   or while reading) and :attr:`~serving.settings.Limits.body_seconds` (408); a client that
   goes away mid-body is dropped quietly;
4. strict JSON: one object, no duplicate keys, no ``NaN``/``Infinity`` (400);
5. the api's input model, strict (no ``"10"`` for 10, no ``true`` for a number, unknown
   fields refused): 400 with the field named at the top level and no value echoed;
6. cross-field limits (``customers x n`` of ``recommend_batch``: 413).

It also serves the OpenAPI document (``/docs.json``) with Patron's error responses, the
plain routes and the package version (:func:`openapi_document`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any

import anyio
from pydantic import ValidationError
from pydantic_core import to_json

from serving.settings import Limits

__all__ = ["RequestGuard", "admin_denied", "error_body", "openapi_document", "short"]

log = logging.getLogger("patron.serving")
_TYPE_TAG = re.compile(r"^(str|int|float|bool|list|dict|none|constrained-\w+|function-\w+.*|.*\[.*)$")


def short(value: Any, chars: int = 40) -> str:
    """A value as text, cut to a short prefix (error messages never echo a whole value)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= chars else text[:chars] + f"...({len(text)} chars)"


def error_body(message: str, field: str | None = None, detail: list | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    if detail:
        body["detail"] = detail
    return to_json(body)


def admin_denied(headers, token: str | None) -> tuple[int, str] | None:
    """``(status, message)`` when the request may not use admin endpoints, else None.

    ``headers``: ASGI headers as a dict of lower-case bytes, or Starlette's ``Headers``."""
    if not token:
        return 403, "admin endpoints are disabled (PATRON_ADMIN_TOKEN is not set)"

    def get(name: str) -> str:
        if isinstance(headers, dict):
            return headers.get(name.encode(), b"").decode("latin-1")
        return headers.get(name, "")

    given = get("authorization")
    given = given[7:].strip() if given.lower().startswith("bearer ") else get("x-patron-admin-token").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return 401, "admin token missing or wrong"
    return None


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if isinstance(p, int) or not _TYPE_TAG.match(str(p))]
    return ".".join(parts)


def validation_error(exc: ValidationError) -> tuple[str, str, list[dict]]:
    """``(message, field, detail)`` of a pydantic error: the first field at the top level."""
    errs = exc.errors(include_url=False, include_context=False, include_input=False)
    detail = [{"loc": _field(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errs]
    first = detail[0]["loc"] or "body"
    msgs = list(dict.fromkeys(d["msg"] for d in detail if (d["loc"] or "body") == first))
    more = len({d["loc"] for d in detail}) - 1
    message = f"{first}: {'; or '.join(msgs)}" + (f" (and {more} more field errors)" if more > 0 else "")
    return message, first, detail


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _constant(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_json(body: bytes) -> dict:
    """The request body as a JSON object: no duplicate keys, no NaN/Infinity."""
    try:
        data = json.loads(body, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Duplicate as exc:
        raise ValueError(f"{short(exc.args[0])}: the key appears more than once") from None
    except UnicodeDecodeError:
        raise ValueError("body: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:
        raise ValueError(f"body: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"body: must be a JSON object of the request fields, not a {type(data).__name__}")
    return data


def _batch_items(data: dict, limits: Limits) -> str | None:
    ids = data.get("customer_ids")
    n = data.get("n", 10)
    if isinstance(ids, list) and isinstance(n, int) and len(ids) * n > limits.batch_items:
        return (f"customer_ids x n: {len(ids):,} customers x n={n} = {len(ids) * n:,} items; at most "
                f"{limits.batch_items:,} per call (PATRON_MAX_BATCH_ITEMS): split the batch")
    return None


CROSS_FIELD = {"recommend_batch": _batch_items}


class RequestGuard:
    """ASGI middleware: see the module docstring. ``service``: the BentoML service class
    (its apis give the routes and input models); ``settings``: a callable returning the
    :class:`~serving.settings.ServingSettings` (read once, after the worker starts)."""

    def __init__(self, app, service, settings) -> None:
        self.app = app
        self.service = service
        self._settings = settings
        self._routes: dict[str, Any] | None = None
        self._openapi: bytes | None = None

    @property
    def routes(self) -> dict[str, Any]:
        if self._routes is None:
            self._routes = {("/" + api.route.lstrip("/")): api for api in self.service.apis.values()}
        return self._routes

    async def _send(self, send, status: int, body: bytes, endpoint: str | None = None) -> None:
        if endpoint and 400 <= status < 500:
            try:
                from serving.metrics import get_metrics

                get_metrics().client_errors.labels(endpoint=endpoint).inc()
            except Exception:  # metrics are secondary to the answer
                pass
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/docs.json" and scope["method"] == "GET":
            if self._openapi is None:
                self._openapi = to_json(openapi_document(self.service))
            return await self._send(send, 200, self._openapi)
        api = self.routes.get(path)
        if api is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        settings = self._settings()
        limits = settings.limits
        name = api.name
        headers = dict(scope["headers"])
        if path.startswith("/admin/"):
            denied = admin_denied(headers, settings.admin_token)
            if denied:
                return await self._send(send, denied[0], error_body(denied[1]), name)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            shown = short(ctype.decode("latin-1"), 60) or "none"
            return await self._send(send, 415, error_body(
                f"content-type: {shown} is not supported; send application/json"), name)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.body_bytes):
            return await self._send(send, 413, error_body(
                f"body: {short(length.decode('latin-1'))} bytes; at most {limits.body_bytes:,} "
                "(PATRON_MAX_BODY_BYTES)"), name)
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(limits.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client went away: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limits.body_bytes:
                        return await self._send(send, 413, error_body(
                            f"body: more than {limits.body_bytes:,} bytes (PATRON_MAX_BODY_BYTES)"), name)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await self._send(send, 408, error_body(
                f"body: not received within {limits.body_seconds:g} s"), name)
        body = b"".join(chunks)
        if not body.strip():
            return await self._send(send, 400, error_body(
                "body: empty; send a JSON object of the request fields, e.g. {}"), name)
        try:
            data = strict_json(body)
            api.input_spec.model_validate_json(body)
        except ValidationError as exc:
            message, field, detail = validation_error(exc)
            return await self._send(send, 400, error_body(message, field, detail), name)
        except ValueError as exc:
            message = str(exc)
            return await self._send(send, 400, error_body(message, message.split(":", 1)[0]), name)
        check = CROSS_FIELD.get(name)
        problem = check(data, limits) if check else None
        if problem:
            return await self._send(send, 413, error_body(problem, problem.split(":", 1)[0]), name)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_ERRORS = {
    400: "bad request: malformed JSON, a field of the wrong type or out of range (the field is named)",
    401: "admin token missing or wrong",
    403: "admin endpoints are disabled",
    404: "unknown customer, or a model without customer tables (customer_profile)",
    408: "the body was not received in time",
    409: "reload failed: the old model keeps serving",
    413: "the request is larger than a documented limit (body, customers x n)",
    415: "content type other than application/json",
    503: "no model loaded yet, or the exposure log cannot be written",
}


def openapi_document(service) -> dict:
    """BentoML's OpenAPI document with Patron's title, version, error responses (every
    status the service answers, with :class:`~serving.schemas.ErrorResponse`) and the plain
    routes (``/info``, ``/widget``)."""
    from serving.schemas import ErrorResponse

    spec = service.openapi_spec.asdict()
    spec["info"] = {"title": "Patron recommendations",
                    "description": "Personalised lists, cross-sell, up-sell, similar items and "
                                   "customer profiles for repeat customers. Every list names its "
                                   "strategy, model version and variant.",
                    "version": _version()}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema()
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for path, item in spec.get("paths", {}).items():
        post = item.get("post")
        if not post or not isinstance(post, dict):
            continue
        responses = {k: v for k, v in post.get("responses", {}).items() if str(k) in ("200",)}
        codes = [400, 408, 413, 415, 503]
        if path.startswith("/admin/"):
            codes += [401, 403, 409]
        if path == "/customer_profile":
            codes += [404]
        for code in sorted(codes):
            responses[str(code)] = {"description": _ERRORS[code], **ref}
        post["responses"] = responses
    spec["paths"]["/info"] = {"get": {
        "tags": ["Service APIs"], "description": "what is served: models, versions, data span, "
        "experiments (server paths and ids only with the admin token)",
        "responses": {"200": {"description": "service information",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "503": {"description": _ERRORS[503], **ref}}}}
    spec["paths"]["/widget"] = {"get": {
        "tags": ["Service APIs"], "description": "a demo page of the recommendation widget",
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}}}}
    return spec


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("patron")
    except Exception:  # running from a source tree without the package installed
        return "unknown"
