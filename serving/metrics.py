"""Patron's own Prometheus counters, exported on BentoML's ``/metrics``.

Created lazily inside the worker (after BentoML sets ``PROMETHEUS_MULTIPROC_DIR``), so
counts from every worker process add up on ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

__all__ = ["Metrics", "get_metrics"]


@dataclass(frozen=True)
class Metrics:
    requests: object  # Counter(endpoint, strategy, variant)
    fallbacks: object  # Counter(endpoint, strategy)
    unknown_ids: object  # Counter(endpoint, kind)
    client_errors: object  # Counter(endpoint)
    reloads: object  # Counter(outcome)
    # labelled children by (endpoint, strategy, variant): ``labels()`` costs more than ``inc``
    _children: dict = field(default_factory=dict, compare=False, repr=False)

    def served(self, endpoint: str, strategy: str, variant: str) -> None:
        key = (endpoint, strategy, variant)
        counters = self._children.get(key)
        if counters is None:
            counters = [self.requests.labels(endpoint=endpoint, strategy=strategy,
                                              variant=variant)]
            if "fallback" in strategy or strategy == "popularity":
                counters.append(self.fallbacks.labels(endpoint=endpoint, strategy=strategy))
            self._children[key] = counters
        for c in counters:
            c.inc()


@cache
def get_metrics() -> Metrics:
    import prometheus_client as pc

    return Metrics(
        requests=pc.Counter(
            "patron_requests", "Lists served", ["endpoint", "strategy", "variant"]
        ),
        fallbacks=pc.Counter(
            "patron_fallbacks", "Lists served by a fallback strategy", ["endpoint", "strategy"]
        ),
        unknown_ids=pc.Counter(
            "patron_unknown_ids", "Requests naming unknown ids", ["endpoint", "kind"]
        ),
        client_errors=pc.Counter("patron_client_errors", "Requests refused (4xx)", ["endpoint"]),
        reloads=pc.Counter("patron_reloads", "Model reloads", ["outcome"]),
    )
