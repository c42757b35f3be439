"""Synthetic purchase logs with planted, known structure (for tests and benchmarks).

:func:`generate_purchases` returns a :class:`SyntheticLog`: ``purchases`` in the canonical
clean schema (see docs/ARCHITECTURE.md) and ``truth`` (:class:`SyntheticTruth`), the
structure that was planted:

* **customer groups**: every customer belongs to one group; a group prefers one item
  cluster, and each cluster is a category (``truth.customer_groups``);
* **complements**: an anchor item ("coffee machine") pulls its complements ("beans",
  "filters") into the same basket (``truth.complements``: antecedent -> consequent);
* **pricier versions**: (cheap, premium) pairs in the same category; premium unit price is
  3-4x the cheap one and above every ordinary item of the category (``truth.premium_pairs``);
* **seasonal items**: sold only inside a date window (``truth.seasonal``);
* **repeat buying**: some customers buy their group's staple item at a regular, personal
  interval (``truth.repeat_intervals``: customer_id, item_id, interval_days). Staples are
  sold only through this process, so a customer's gaps are ``interval_days`` +- jitter.

Everything is vectorised numpy and deterministic for a seed; millions of lines take
seconds. Item ids are ``"I0007"``-style strings (permuted, so an id does not reveal its
role); customer ids are int64 from 1; ``order_id`` is int64 and increases with time; an
order holds each item at most once (quantities summed), so the log is already clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import columns as C

__all__ = ["SyntheticLog", "SyntheticTruth", "generate_purchases", "ROLES"]

ROLES = ("regular", "anchor", "complement", "cheap", "premium", "seasonal", "staple")
_CATEGORY_NAMES = (
    "coffee", "bakery", "dairy", "produce", "household", "garden", "pets", "toys",
    "books", "beauty", "drinks", "snacks", "frozen", "baby", "sports", "tools",
)
# local positions of the planted roles inside each category block
_ANCHOR, _COMP1, _COMP2, _CHEAP, _PREMIUM, _SEASONAL, _STAPLE = range(7)
_N_SPECIAL = 7


@dataclass(frozen=True)
class SyntheticTruth:
    """The planted structure of a synthetic log (all ids are external ids)."""

    items: pd.DataFrame
    """Catalog: item_id, category, item_name, role (one of ``ROLES``), base_price."""
    customer_groups: pd.DataFrame
    """customer_id, group, category (the category the group prefers)."""
    complements: pd.DataFrame
    """antecedent, consequent: consequent is put in the antecedent's basket."""
    premium_pairs: pd.DataFrame
    """cheap, premium, category: premium is the pricier version of cheap."""
    seasonal: pd.DataFrame
    """item_id, start, end: sold only with ``start <= timestamp < end``."""
    repeat_intervals: pd.DataFrame
    """customer_id, item_id, interval_days: regular repurchase interval of a customer."""
    start: pd.Timestamp
    end: pd.Timestamp
    """First day and the day after the last day of the log."""


@dataclass(frozen=True)
class SyntheticLog:
    """A purchase log in the canonical clean schema plus its planted structure."""

    purchases: pd.DataFrame
    truth: SyntheticTruth


def _item_ids(n: int) -> np.ndarray:
    width = max(4, len(str(n - 1)))
    return np.array([f"I{i:0{width}d}" for i in range(n)], dtype=object)


def generate_purchases(
    n_customers: int = 300,
    n_items: int = 120,
    n_days: int = 180,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2024-01-01",
    n_categories: int | None = None,
    mean_orders: float = 8.0,
    mean_basket: float = 2.0,
    p_preferred: float = 0.75,
    p_complement: float = 0.7,
    p_seasonal: float = 0.3,
    p_repeat: float = 0.5,
    interval_range: tuple[int, int] = (7, 30),
    interval_jitter_days: int = 1,
    popularity_exponent: float = 0.8,
) -> SyntheticLog:
    """Generate a purchase log with planted structure; deterministic for ``seed``.

    ``n_categories`` defaults to ``n_items // 20`` (1..50); each category needs at least 8
    items. Each customer places ``1 + Poisson(mean_orders - 1)`` ordinary orders on uniform
    random days, each with ``1 + Poisson(mean_basket - 1)`` sampled lines (a line comes from
    the customer's preferred category with probability ``p_preferred``; within a category
    popularity is Zipf-like with ``popularity_exponent``). Planted lines come on top:
    complements (each with ``p_complement`` per anchor line), a seasonal item of the preferred
    category (``p_seasonal`` per order inside its window) and staple repeat orders (for a
    ``p_repeat`` share of customers, every ``interval_days`` in ``interval_range``, +-
    ``interval_jitter_days``). Defaults give about 7,400 lines (4,000 orders).
    """
    if n_customers < 1 or n_days < 1:
        raise ValueError("n_customers and n_days must be positive")
    if n_categories is None:
        n_categories = int(min(50, max(1, n_items // 20)))
    if n_items < (_N_SPECIAL + 1) * n_categories:
        raise ValueError(
            f"n_items={n_items} too small: need at least {_N_SPECIAL + 1} items per category "
            f"({n_categories} categories)"
        )
    rng = np.random.default_rng(seed)
    start_ts = pd.Timestamp(start).normalize()
    lo, hi = interval_range

    # ---- catalog: contiguous category blocks, roles at fixed local positions -------------
    cat_of = (np.arange(n_items) * n_categories) // n_items  # sorted, blocks
    cat_start = np.searchsorted(cat_of, np.arange(n_categories))
    local = np.arange(n_items) - cat_start[cat_of]
    role = np.zeros(n_items, dtype=np.int64)  # index into ROLES
    role_by_local = {_ANCHOR: 1, _COMP1: 2, _COMP2: 2, _CHEAP: 3, _PREMIUM: 4,
                     _SEASONAL: 5, _STAPLE: 6}
    for pos, r in role_by_local.items():
        role[local == pos] = r
    n_regular_local = np.maximum(local - _N_SPECIAL, 0)

    cat_names = np.array(
        [_CATEGORY_NAMES[k] if k < len(_CATEGORY_NAMES) else f"category{k}"
         for k in range(n_categories)], dtype=object)
    cat_base = rng.uniform(2.0, 30.0, n_categories)
    price = cat_base[cat_of] * rng.uniform(0.8, 1.3, n_items)
    cheap_idx = cat_start + _CHEAP
    prem_idx = cat_start + _PREMIUM
    price[cheap_idx] = cat_base * rng.uniform(0.5, 0.7, n_categories)
    price[prem_idx] = price[cheap_idx] * rng.uniform(3.0, 4.0, n_categories)
    price = np.round(price, 2)

    # general-sampler weights (Zipf over regular items; planted roles set explicitly)
    weight = 1.0 / (1.0 + n_regular_local) ** popularity_exponent
    weight[role == 1] = 1.0          # anchors: popular
    weight[role == 2] = 0.05         # complements: rare on their own
    weight[role == 3] = 0.8          # cheap version: popular
    weight[role == 4] = 0.3          # premium version: less so
    weight[role == 5] = 0.0          # seasonal: only in window
    weight[role == 6] = 0.0          # staple: only via repeat orders
    # per-category CDF shifted by category index: searchsorted(k + u) samples within k
    cat_tot = np.bincount(cat_of, weights=weight, minlength=n_categories)
    cum = np.cumsum(weight) - np.concatenate([[0.0], np.cumsum(cat_tot)[:-1]])[cat_of]
    shifted_cdf = cat_of + cum / cat_tot[cat_of]
    shifted_cdf[cat_start[1:] - 1] = np.arange(1, n_categories)  # exact block ends
    shifted_cdf[-1] = n_categories

    perm = rng.permutation(n_items)  # index -> external id number
    ids = _item_ids(n_items)[perm]
    names = np.array(
        [f"{cat_names[c]} {ROLES[r]} {loc}" for c, r, loc in zip(cat_of, role, local, strict=True)],
        dtype=object,
    )
    names[cat_start + _ANCHOR] = cat_names + " machine"
    names[cat_start + _COMP1] = cat_names + " refill"
    names[cat_start + _COMP2] = cat_names + " filter"

    # seasonal windows (days)
    win_len = max(1, min(n_days, max(14, n_days // 6)))
    win_start = rng.integers(0, n_days - win_len + 1, n_categories)

    # ---- customers ---------------------------------------------------------------------
    cust_ids = np.arange(1, n_customers + 1, dtype=np.int64)
    pref = rng.integers(0, n_categories, n_customers)

    # ---- orders: ordinary ones, then staple repeat orders (one staple line each) -----------
    n_ord_c = 1 + rng.poisson(max(mean_orders - 1.0, 0.0), n_customers)
    o_cust = np.repeat(np.arange(n_customers), n_ord_c)
    o_day = rng.integers(0, n_days, len(o_cust))

    rep_c = np.flatnonzero(rng.random(n_customers) < p_repeat)
    interval = rng.integers(lo, hi + 1, len(rep_c))
    offset = (rng.random(len(rep_c)) * interval).astype(np.int64)
    min_gap = np.maximum(interval - interval_jitter_days, 1)
    n_ev = np.maximum((n_days - 1 - offset) // min_gap + 1, 0)  # upper bound, trimmed below
    ev_c = np.repeat(np.arange(len(rep_c)), n_ev)
    first = np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    ev_k = np.arange(len(ev_c)) - first
    jit = rng.integers(-interval_jitter_days, interval_jitter_days + 1, len(ev_c))
    gap = np.where(ev_k > 0, interval[ev_c] + jit, 0)
    csum = np.cumsum(gap)
    ev_day = offset[ev_c] + csum - csum[first]  # every gap is interval +- jitter
    keep = ev_day < n_days
    ev_c, ev_day = ev_c[keep], ev_day[keep]
    n_ev = np.bincount(ev_c, minlength=len(rep_c))

    is_rep = np.concatenate([np.zeros(len(o_cust), bool), np.ones(len(ev_c), bool)])
    o_cust = np.concatenate([o_cust, rep_c[ev_c]])
    o_day = np.concatenate([o_day, ev_day])
    t = o_day.astype(np.int64) * 86400 + rng.integers(8 * 3600, 20 * 3600, len(o_day))
    order = _argsort_time(t)  # orders in time order; order_id = position + 1
    is_rep, o_cust, o_day, t = is_rep[order], o_cust[order], o_day[order], t[order]
    n_ord = len(t)
    o_pref = pref[o_cust]

    # ---- lines, generated per segment with sorted order indices ----------------------------
    basket = np.where(is_rep, 0, 1 + rng.poisson(max(mean_basket - 1.0, 0.0), n_ord))
    l_ord = np.repeat(np.arange(n_ord), basket)
    n_lines = len(l_ord)
    use_pref = rng.random(n_lines) < p_preferred
    l_cat = np.where(use_pref, o_pref[l_ord], rng.integers(0, n_categories, n_lines))
    l_item = np.searchsorted(shifted_cdf, l_cat + rng.random(n_lines), side="right")
    l_item = np.minimum(l_item, n_items - 1)
    seg_ord, seg_item = [l_ord], [l_item]

    # complements: every anchor line pulls each complement with p_complement
    anchor_line = np.flatnonzero(role[l_item] == 1)
    for pos in (_COMP1, _COMP2):
        take = anchor_line[rng.random(len(anchor_line)) < p_complement]
        seg_ord.append(l_ord[take])
        seg_item.append(cat_start[cat_of[l_item[take]]] + pos)

    # seasonal: ordinary orders inside the preferred category's window
    in_win = (o_day >= win_start[o_pref]) & (o_day < win_start[o_pref] + win_len)
    seas_ord = np.flatnonzero(in_win & ~is_rep & (rng.random(n_ord) < p_seasonal))
    seg_ord.append(seas_ord)
    seg_item.append(cat_start[o_pref[seas_ord]] + _SEASONAL)

    rep_ord = np.flatnonzero(is_rep)
    seg_ord.append(rep_ord)
    seg_item.append(cat_start[o_pref[rep_ord]] + _STAPLE)

    line_ord, line_item = _merge_sorted_segments(seg_ord, seg_item, n_ord)
    qty = 1.0 + rng.poisson(0.25, len(line_ord))
    # one line per (order, item), quantities summed, as in a clean log (timsort on
    # nearly sorted keys: lines are already grouped by order)
    key = line_ord * n_items + line_item
    srt = np.argsort(key, kind="stable")
    key = key[srt]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    line_ord, line_item = line_ord[srt[starts]], line_item[srt[starts]]
    qty = np.add.reduceat(qty[srt], starts) if len(starts) else qty
    m = len(line_ord)
    disc = np.where(rng.random(m) < 0.1, 0.8, 1.0)
    ts = start_ts.to_datetime64().astype("datetime64[ns]") + (
        t[line_ord] * 1_000_000_000).astype("timedelta64[ns]")
    purchases = pd.DataFrame({
        C.CUSTOMER_ID: cust_ids[o_cust[line_ord]],
        C.ITEM_ID: ids[line_item],
        C.TIMESTAMP: ts,
        C.QUANTITY: qty.astype(np.float64),
        C.PRICE: np.round(price[line_item] * disc, 2),
        C.ORDER_ID: line_ord + 1,
        C.CATEGORY: cat_names[cat_of[line_item]],
        C.ITEM_NAME: names[line_item],
    }, copy=False)  # fresh arrays: no copy, no block consolidation

    # ---- truth ---------------------------------------------------------------------------
    items = pd.DataFrame({
        C.ITEM_ID: ids, C.CATEGORY: cat_names[cat_of], C.ITEM_NAME: names,
        "role": np.array(ROLES, dtype=object)[role], "base_price": price,
    })
    groups = pd.DataFrame({C.CUSTOMER_ID: cust_ids, "group": pref, C.CATEGORY: cat_names[pref]})
    anchors = np.repeat(cat_start + _ANCHOR, 2)
    comps = np.stack([cat_start + _COMP1, cat_start + _COMP2], axis=1).ravel()
    complements = pd.DataFrame({"antecedent": ids[anchors], "consequent": ids[comps]})
    premium = pd.DataFrame({"cheap": ids[cheap_idx], "premium": ids[prem_idx],
                            C.CATEGORY: cat_names})
    day = np.timedelta64(1, "D")
    seasonal = pd.DataFrame({
        C.ITEM_ID: ids[cat_start + _SEASONAL],
        "start": start_ts + win_start * day,
        "end": start_ts + (win_start + win_len) * day,
    })
    has_events = n_ev > 0
    repeat = pd.DataFrame({
        C.CUSTOMER_ID: cust_ids[rep_c[has_events]],
        C.ITEM_ID: ids[cat_start[pref[rep_c[has_events]]] + _STAPLE],
        "interval_days": interval[has_events].astype(np.int64),
    })
    truth = SyntheticTruth(
        items=items, customer_groups=groups, complements=complements, premium_pairs=premium,
        seasonal=seasonal, repeat_intervals=repeat, start=start_ts,
        end=start_ts + pd.Timedelta(days=n_days),
    )
    return SyntheticLog(purchases=purchases, truth=truth)


def _argsort_time(t: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 seconds; two 16-bit radix passes when they fit."""
    if len(t) and t.max() < 2**32:
        p1 = np.argsort((t & 0xFFFF).astype(np.uint16), kind="stable")
        return p1[np.argsort((t[p1] >> 16).astype(np.uint16), kind="stable")]
    return np.argsort(t, kind="stable")


def _merge_sorted_segments(
    seg_ord: list[np.ndarray], seg_item: list[np.ndarray], n_ord: int
) -> tuple[np.ndarray, np.ndarray]:
    """Interleave line segments (each sorted by order) so lines are grouped by order.

    A counting sort: a line lands at its order's start + lines of that order in earlier
    segments + its position among its order's lines in its own segment. O(n), no sort.
    """
    total = np.zeros(n_ord, dtype=np.int64)
    for o in seg_ord:
        total += np.bincount(o, minlength=n_ord)
    nxt = np.cumsum(total) - total  # next free slot of each order
    m = int(total.sum())
    out_ord = np.empty(m, dtype=np.int64)
    out_item = np.empty(m, dtype=np.int64)
    for o, it in zip(seg_ord, seg_item, strict=True):
        if not len(o):
            continue
        idx = np.arange(len(o))
        new_group = np.r_[True, o[1:] != o[:-1]]
        within = idx - np.maximum.accumulate(np.where(new_group, idx, 0))
        pos = nxt[o] + within
        out_ord[pos] = o
        out_item[pos] = it
        nxt += np.bincount(o, minlength=n_ord)
    return out_ord, out_item
