"""Thread limits for model fitting.

implicit runs its own thread pool and warns (and slows down badly) when OpenBLAS or MKL
also spawn threads, so its fits run inside ``blas_threads(1)`` as implicit advises.
Dense linear algebra (EASE) may use several BLAS threads instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

__all__ = ["blas_threads"]


@contextmanager
def blas_threads(n: int | None = 1) -> Iterator[None]:
    """Limit BLAS thread pools to ``n`` threads inside the block (``None``/``0``: no limit)."""
    if not n:
        yield
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield
