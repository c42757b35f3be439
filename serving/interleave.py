"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of two ranked lists.

Each round, the team with fewer picks so far (a coin flip on ties) adds its best item not
yet shown. The result records which team contributed each item, so clicks/purchases can
be credited to a variant (experiments/ does the credit analysis).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Sequence

__all__ = ["team_draft"]


def team_draft(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    n: int,
    *,
    seed: int | str = 0,
    names: tuple[str, str] = ("A", "B"),
) -> tuple[list, list[str]]:
    """Interleave ranked lists ``a`` and ``b`` into at most ``n`` distinct items.

    Returns ``(items, teams)`` with ``teams[i]`` in ``names``: who contributed ``items[i]``.
    ``seed`` (e.g. the request id) makes the coin flips reproducible.
    """
    if isinstance(seed, str):
        seed = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    lists = (list(a), list(b))
    pos = [0, 0]
    picks = [0, 0]
    shown: set = set()
    items: list = []
    teams: list[str] = []

    def next_item(t: int):
        lst = lists[t]
        while pos[t] < len(lst) and lst[pos[t]] in shown:
            pos[t] += 1
        return lst[pos[t]] if pos[t] < len(lst) else None

    while len(items) < n:
        cand = (next_item(0), next_item(1))
        if cand[0] is None and cand[1] is None:
            break
        if cand[0] is None:
            t = 1
        elif cand[1] is None:
            t = 0
        elif picks[0] != picks[1]:
            t = 0 if picks[0] < picks[1] else 1
        else:
            t = rng.randrange(2)
        item = cand[t]
        shown.add(item)
        items.append(item)
        teams.append(names[t])
        picks[t] += 1
    return items, teams
