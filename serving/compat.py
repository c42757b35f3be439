"""Everything Patron changes in BentoML and uvicorn, in one place (each with its reason).

:func:`apply` is called once per worker process when :mod:`serving.service` is imported:

- **metrics labels** (BentoML's ``RunnerTrafficMetricsMiddleware``): the ``endpoint`` label is
  the raw request path, so every unknown path became a new time series (2,000 paths took
  ``/metrics`` from 244 KB to 8.6 MB). Paths that are not routes of the service are counted
  under one label, :data:`UNKNOWN_PATH` (they are answered 404 either way).
- **header-read timeout** (uvicorn's httptools protocol): uvicorn has none, so a client that
  opens a connection and sends nothing, or half the headers, holds it open. A connection
  whose request headers are not complete within ``Limits.header_seconds`` is closed.
- **api callers** (:func:`fast_api_callers`): BentoML builds a new local caller and runs
  ``inspect.signature`` for every request; both are built once.
- **strict inputs** (:func:`strict_inputs`): BentoML builds each api's input model from its
  signature; unknown fields are refused and values are not coerced (``"10"`` is no ``n``).
"""

from __future__ import annotations

import inspect
import logging

__all__ = ["apply", "known_routes", "UNKNOWN_PATH", "KNOWN_PATHS", "KNOWN_PREFIXES", "strict_inputs",
           "fast_api_callers"]

log = logging.getLogger("patron.serving")
UNKNOWN_PATH = "/__unknown__"
KNOWN_PATHS: set[str] = {"/", "/docs.json", "/schema.json", "/metrics", "/healthz", "/livez",
                         "/readyz", "/info", "/widget", "/widget/patron-widget.js"}
KNOWN_PREFIXES = ("/static_content/",)
_applied = False


def _known(path: str) -> bool:
    return path in KNOWN_PATHS or path.startswith(KNOWN_PREFIXES)


def _patch_metrics_labels() -> None:
    from bentoml._internal.server.http import instruments

    for cls in (instruments.RunnerTrafficMetricsMiddleware, instruments.HTTPTrafficMetricsMiddleware):
        orig = cls.__call__
        if getattr(orig, "_patron", False):
            continue

        async def __call__(self, scope, receive, send, _orig=orig):
            if scope["type"] == "http" and not _known(scope["path"]):
                scope = {**scope, "path": UNKNOWN_PATH}  # a 404 either way
            await _orig(self, scope, receive, send)

        __call__._patron = True  # type: ignore[attr-defined]
        cls.__call__ = __call__


def _patch_header_timeout(seconds: float) -> None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency
        return
    if getattr(HttpToolsProtocol, "_patron_header_timeout", None) is not None:
        return
    made, begin, complete, lost = (HttpToolsProtocol.connection_made, HttpToolsProtocol.on_message_begin,
                                   HttpToolsProtocol.on_headers_complete, HttpToolsProtocol.connection_lost)

    def _arm(self) -> None:
        _disarm(self)
        self._patron_timer = self.loop.call_later(seconds, _expire, self)

    def _disarm(self) -> None:
        timer = getattr(self, "_patron_timer", None)
        if timer is not None:
            timer.cancel()
            self._patron_timer = None

    def _expire(self) -> None:
        self._patron_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport):
        made(self, transport)
        _arm(self)  # the first request's headers must come within the limit

    def on_message_begin(self):
        begin(self)
        if getattr(self, "_patron_timer", None) is None:
            _arm(self)  # a further request on a kept-alive connection

    def on_headers_complete(self):
        _disarm(self)
        complete(self)

    def connection_lost(self, exc):
        _disarm(self)
        lost(self, exc)

    HttpToolsProtocol.connection_made = connection_made
    HttpToolsProtocol.on_message_begin = on_message_begin
    HttpToolsProtocol.on_headers_complete = on_headers_complete
    HttpToolsProtocol.connection_lost = connection_lost
    HttpToolsProtocol._patron_header_timeout = seconds


def strict_inputs(service) -> None:
    """Unknown request fields refused, no coercion, no NaN/Infinity, on every api's input
    model (a typo such as ``"customerid"`` must not silently fall back to popularity)."""
    for method in service.apis.values():
        cfg = method.input_spec.model_config
        cfg["extra"] = "forbid"
        cfg["strict"] = True
        cfg["allow_inf_nan"] = False
        method.input_spec.model_rebuild(force=True)
        # BentoML's local caller runs inspect.signature(func) on every request: give it the
        # signature once (inspect returns a function's __signature__ as is)
        method.func.__signature__ = inspect.signature(method.func)


def fast_api_callers(instance, service) -> None:
    """BentoML looks each api up on the instance per request, and its descriptor builds a new
    local caller (and signature) every time: build them once (``service``: the Service)."""
    for name, method in service.apis.items():
        instance.__dict__[name] = method.__get__(instance, type(instance))


def known_routes(service) -> None:
    """Add the service's api routes to :data:`KNOWN_PATHS` (the metrics keep their labels)."""
    KNOWN_PATHS.update("/" + api.route.lstrip("/") for api in service.apis.values())


def apply(header_seconds: float) -> None:
    """Install the patches of this module (idempotent); call :func:`known_routes` with the
    service once it is defined."""
    global _applied
    if _applied:
        return
    _patch_metrics_labels()
    _patch_header_timeout(header_seconds)
    _applied = True
