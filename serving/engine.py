"""Pure recommendation logic over one loaded :class:`~features.artifact.ModelArtifact`.

An :class:`Engine` precomputes what the hot path needs once per model (dense float32 item
factors, normalised factors, popularity, item table columns aligned with the item index,
id dictionaries) and answers ``recommend``, ``recommend_batch``, ``similar``,
``cross_sell`` and ``up_sell`` with numpy only (no pandas per request). Scoring itself is
:mod:`features.scoring` (the same code training evaluates with); the only local shortcut is
the dot product for a known customer of a factor model, and a fold-in that reuses a
precomputed ``Y^T Y`` (tested equal to :func:`features.scoring.fold_in`).

Customer lifecycle: when the artifact carries the customer tables (``customers`` with the NES
stage, ``favourites``), the engine keeps one stage code per customer row and each half-asleep
or sleeping customer's favourite items (CSR-like arrays), and :class:`ProfileTables` for
``/customer_profile``. ``recommend(..., stage_aware=True)`` leads such a customer's list with
their own favourites (strategy ``winback``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import scoring
from features.artifact import ModelArtifact
from features.errors import PatronError
from serving.filters import filter_mask
from serving.guard import short
from serving.profiles import ProfileTables
from serving.schemas import Filters

__all__ = ["Engine", "Result", "EngineCheckError", "NES_STAGES", "WINBACK_STAGES"]

log = logging.getLogger("patron.serving")

NEG_INF = np.float32(-np.inf)
_NO_ITEMS = np.empty(0, dtype=np.int64)
REASON_SOURCES = 20  # history items considered when explaining a recommendation
# a same-category item is a complement (not a substitute) when it is in at least this share
# of the orders that hold the basket item (a second coffee machine almost never is)
COMPLEMENT_MIN_CONFIDENCE = 0.3
TOPK_EXTRA = 200  # cached candidates per customer beyond their history length
BATCH_BLOCK = 128  # customers scored per matrix product in recommend_batch (memory bound)
NES_STAGES = ("N", "E0", "S1", "S2", "S3")  # features.customers.nes.NES_STAGES
WINBACK_STAGES = ("S2", "S3")  # half-asleep, sleeping: their list leads with their favourites
WINBACK_REASON = "you used to buy this"


class EngineCheckError(PatronError):
    """A freshly loaded model failed its sanity check."""


@dataclass
class Result:
    """One ranked list: item indices, scores, reasons, and how it was made."""

    items: np.ndarray
    scores: np.ndarray
    reasons: list[str | None]
    strategy: str
    warnings: list[str] = field(default_factory=list)


def _shown(ids: list) -> list[str]:
    """At most ten ids, each cut to a short prefix, for a warning."""
    return [short(v) for v in ids[:10]]


def _unit(x: np.ndarray) -> np.ndarray:
    """Scale finite values of a 1-d array to [0, 1] (non-finite stay as they are)."""
    fin = np.isfinite(x)
    if not fin.any():
        return x
    lo, hi = x[fin].min(), x[fin].max()
    span = hi - lo if hi > lo else 1.0
    out = x.copy()
    out[fin] = (x[fin] - lo) / span
    return out


class Engine:
    """Serves one model artifact. Immutable after construction: safe to share by threads."""

    def __init__(self, art: ModelArtifact, *, uri: str = "", version: str = "local") -> None:
        self.art = art
        self.uri = uri
        self.version = version
        self.path = ""  # the artifact directory, set by the loader
        self.kind = art.kind
        self.n_items = art.n_items
        self.item_ids = art.items.ids
        self._cust_numeric = art.customers.is_numeric
        self._item_numeric = art.items.is_numeric
        self._cust_index = {k: i for i, k in enumerate(art.customers.ids.tolist())}
        self._item_index = {k: i for i, k in enumerate(art.items.ids.tolist())}
        self._item_id_list = art.items.ids.tolist()
        h = sp.csr_matrix(art.history, dtype=np.float32)
        h.sort_indices()
        self.history = h
        # a context (cart) item counts like the customer's strongest training interaction
        self._context_weight = np.float32(max(1.0, float(h.data.max()) if h.nnz else 1.0))
        # popularity: the model's item_scores where it has them, else distinct buyers
        if "item_scores" in art.arrays:
            pop = np.asarray(art.arrays["item_scores"], dtype=np.float32)
        else:
            pop = np.bincount(h.indices, minlength=self.n_items).astype(np.float32)
        self.popularity = np.ascontiguousarray(pop)
        self._pop_order = np.argsort(-self.popularity, kind="stable")
        cf_kind = art.params.get("cf_kind", art.kind) if art.kind == "blend" else art.kind
        self.cf_kind = cf_kind
        self.U = self.Yt = self.Yn = self._YtY = None
        if cf_kind == "factors":
            Y = np.asarray(art.arrays["item_factors"], dtype=np.float32)
            self.Yt = np.ascontiguousarray(Y.T)
            norms = np.linalg.norm(Y, axis=1)
            norms[norms == 0] = 1.0
            self.Yn = np.ascontiguousarray(Y / norms[:, None])
            self.U = np.ascontiguousarray(np.asarray(art.arrays["user_factors"], np.float32))
            reg = art.params.get("regularization")
            mode = art.params.get("fold_in")
            if mode is None:
                mode = "als" if reg is not None and "alpha" in art.params else "mean"
            if mode == "als":
                Y64 = Y.astype(np.float64)
                self._YtY = Y64.T @ Y64 + float(reg) * np.eye(Y.shape[1])
                self._Y64 = Y64
        self.similarity = art.arrays.get("similarity") if cf_kind == "item_item" else None
        if self.similarity is not None and sp.issparse(self.similarity):
            self.similarity = sp.csr_matrix(self.similarity)
        self._item_table(art.item_table)
        self.xsell_lift = self._csr(art.arrays.get("xsell_lift"))
        self.xsell_conf = self._csr(art.arrays.get("xsell_confidence"))
        if self.xsell_lift is not None:
            self.xsell_lift.sort_indices()
        self._conf_aligned = (
            self.xsell_lift is not None and self.xsell_conf is not None
            and np.array_equal(self.xsell_lift.indptr, self.xsell_conf.indptr)
            and np.array_equal(self.xsell_lift.indices, self.xsell_conf.indices)
        )
        order = np.argsort(self.category_codes, kind="stable")
        bounds = np.searchsorted(self.category_codes[order], np.arange(len(self.categories) + 1))
        self._members = [order[bounds[c]:bounds[c + 1]] for c in range(len(self.categories))]
        self._lifecycle(art)
        self._build_sources()
        self._labels: list[str | None] = [None] * self.n_items  # "name (id)", filled lazily
        # "similar to name (id)" per source item (index -1, the last: None), filled lazily
        self._similar_text = np.full(self.n_items + 1, None, dtype=object)
        self._build_topk_cache()

    # ---- customer lifecycle -------------------------------------------------------------
    def _lifecycle(self, art: ModelArtifact) -> None:
        """Per customer row: NES stage code (index in :data:`NES_STAGES`, -1 unknown), and
        the favourite items of the :data:`WINBACK_STAGES` customers (``_fav_indptr`` /
        ``_fav_items``, best first); the profile tables."""
        n_c = art.n_customers
        self.stage = np.full(n_c, -1, dtype=np.int8)
        self._fav_indptr = np.zeros(n_c + 1, dtype=np.int64)
        self._fav_items = np.empty(0, dtype=np.int64)
        self.profiles: ProfileTables | None = None
        try:
            self.profiles = ProfileTables.from_artifact(art)
            cust = art.tables.get("customers")
            if cust is None or "customer_id" not in cust or "nes_stage" not in cust:
                return
            rows = art.customers.index_of(cust["customer_id"].to_numpy(), missing="ignore")
            codes = pd.Categorical(cust["nes_stage"], categories=NES_STAGES).codes
            ok = rows >= 0
            self.stage[rows[ok]] = codes[ok]
            fav = art.tables.get("favourites")
            if fav is None or not {"customer_id", "item_id"} <= set(fav.columns) or not len(fav):
                return
            if "offer_rank" in fav.columns:
                fav = fav.sort_values("offer_rank", kind="stable")
            frow = art.customers.index_of(fav["customer_id"].to_numpy(), missing="ignore")
            fitem = art.items.index_of(fav["item_id"].to_numpy(), missing="ignore")
            ok = (frow >= 0) & (fitem >= 0)
            frow, fitem = frow[ok], fitem[ok]
            order = np.argsort(frow, kind="stable")  # by customer row, rank kept within
            self._fav_items = fitem[order].astype(np.int64)
            np.cumsum(np.bincount(frow, minlength=n_c), out=self._fav_indptr[1:])
        except (ValueError, TypeError, KeyError) as exc:  # odd tables: serve without them
            log.warning("customer tables of %s not usable: %s", self.uri or "model", exc)
            self.stage[:] = -1
            self._fav_indptr[:] = 0
            self._fav_items = np.empty(0, dtype=np.int64)

    def stage_of(self, row: int) -> str | None:
        """NES stage of a customer row (None: unknown customer or no tables)."""
        code = int(self.stage[row]) if 0 <= row < len(self.stage) else -1
        return NES_STAGES[code] if code >= 0 else None

    def _winback(self, row: int, n: int, exclude_bought: bool, allowed,
                 warnings: list[str]) -> Result | None:
        """A sleeping customer's list: up to half (at least one) of their favourites first,
        the model's list after (None: not a win-back customer, or no favourite passes)."""
        if self.stage_of(row) not in WINBACK_STAGES:
            return None
        favs = self._fav_items[self._fav_indptr[row]:self._fav_indptr[row + 1]]
        if allowed is not None:
            favs = favs[allowed[favs]]
        favs = favs[: max(1, n // 2)]
        if not len(favs):
            return None
        base = self._ranked(row, np.empty(0, np.int64), n + len(favs), exclude_bought,
                            allowed, warnings)
        rest = np.flatnonzero(~np.isin(base.items, favs))[: n - len(favs)]
        if self.kind == "factors":
            fav_scores = self.U[row] @ self.Yt[:, favs]
        else:
            fav_scores = np.asarray(self.score_row(row, np.empty(0, np.int64))[0])[favs]
        items = np.concatenate([favs, base.items[rest]])
        scores = np.concatenate([np.asarray(fav_scores, np.float32), base.scores[rest]])
        reasons = [WINBACK_REASON] * len(favs) + [base.reasons[i] for i in rest.tolist()]
        return Result(items, scores, reasons, "winback", warnings)

    # ---- top-k cache --------------------------------------------------------------------
    def _build_topk_cache(self) -> None:
        """Each known customer's best ``history length + TOPK_EXTRA`` items, scored once at
        load time (``PATRON_TOPK_CACHE``: ``auto`` = when customers x items <= 5e9, ``on``,
        ``off``). A request then walks its cached list; the answer is exact because every
        item outside the list scores no higher than the last one in it."""
        self._topk = None
        mode = os.environ.get("PATRON_TOPK_CACHE", "auto").strip().lower()
        n_c, n_i = self.art.n_customers, self.n_items
        if mode == "off" or self.kind == "popularity" or n_c == 0:
            return
        if mode == "auto" and n_c * n_i > 5e9:
            return
        k = np.minimum(n_i, np.diff(self.history.indptr) + TOPK_EXTRA).astype(np.int64)
        indptr = np.zeros(n_c + 1, dtype=np.int64)
        np.cumsum(k, out=indptr[1:])
        idx = np.empty(int(indptr[-1]), dtype=np.int32)
        val = np.empty(int(indptr[-1]), dtype=np.float32)
        bought = np.zeros(int(indptr[-1]), dtype=bool)
        source = np.full(int(indptr[-1]), -1, dtype=np.int32)
        for start in range(0, n_c, 256):
            rows = np.arange(start, min(n_c, start + 256))
            S = self.U[rows] @ self.Yt if self.kind == "factors" else scoring.score(self.art, rows)
            S = np.asarray(S, dtype=np.float32)
            for j, r in enumerate(rows.tolist()):
                kr, sr = int(k[r]), S[j]
                part = np.argpartition(sr, n_i - kr)[n_i - kr:] if kr < n_i else np.arange(n_i)
                part = part[np.argsort(-sr[part], kind="stable")]
                lo, hi = indptr[r], indptr[r + 1]
                idx[lo:hi] = part
                val[lo:hi] = sr[part]
                source[lo:hi] = self._best_sources(self._sources(r, _NO_ITEMS), part)
            self._mark_bought(bought, indptr, idx, rows)
        if not np.isfinite(val).all():
            return  # leave non-finite models to the full path (and to check())
        self._topk = (indptr, idx, val, bought, source)
        # the common request (exclude bought, no filter) reads a copy without bought items
        fresh = ~bought
        nb_indptr = np.zeros(n_c + 1, dtype=np.int64)
        per_row = np.bincount(np.repeat(np.arange(n_c), k)[fresh], minlength=n_c)
        np.cumsum(per_row, out=nb_indptr[1:])
        self._similar_reasons(np.unique(source))  # make the reason texts now, not per request
        self._topk_fresh = (nb_indptr, idx[fresh], val[fresh], self._similar_text[source[fresh]])

    def _mark_bought(self, bought: np.ndarray, indptr: np.ndarray, idx: np.ndarray,
                     rows: np.ndarray) -> None:
        """``bought[k]``: the customer of cache entry k bought item ``idx[k]`` (for a block
        of consecutive rows; a merge of sorted (row, item) keys, no per-request np.isin)."""
        h, n_i = self.history, self.n_items
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        lo, hi, h0, h1 = indptr[r0], indptr[r1], h.indptr[r0], h.indptr[r1]
        if h0 == h1:
            return
        keys = np.repeat(rows.astype(np.int64), np.diff(indptr[r0:r1 + 1])) * n_i + idx[lo:hi]
        hist = np.repeat(rows.astype(np.int64), np.diff(h.indptr[r0:r1 + 1])) * n_i + h.indices[h0:h1]
        at = np.minimum(np.searchsorted(hist, keys), len(hist) - 1)  # hist is sorted
        bought[lo:hi] = hist[at] == keys

    def _from_cache(self, row: int, n: int, exclude_bought: bool, allowed) -> tuple | None:
        """(items, scores, reasons) of a known customer without context, from the cache
        (None: too few cached items pass the filters)."""
        indptr, idx, val, bought, source = self._topk
        lo, hi = indptr[row], indptr[row + 1]
        if exclude_bought and allowed is None:
            f_indptr, f_idx, f_val, f_reason = self._topk_fresh
            a, b = f_indptr[row], f_indptr[row + 1]
            if b - a < n and hi - lo < self.n_items:
                return None
            b = min(b, a + n)
            return f_idx[a:b].astype(np.int64), f_val[a:b], f_reason[a:b].tolist()
        cand = idx[lo:hi]
        if exclude_bought:
            keep = ~bought[lo:hi]
            if allowed is not None:
                keep &= allowed[cand]
            sel = np.flatnonzero(keep)
        elif allowed is not None:
            sel = np.flatnonzero(allowed[cand])
        else:
            sel = np.arange(len(cand))
        if len(sel) < n and hi - lo < self.n_items:
            return None  # not enough left in the cached list: score everything
        sel = sel[:n]
        return (cand[sel].astype(np.int64), val[lo:hi][sel],
                self._similar_reasons(source[lo:hi][sel]))

    # ---- set-up -------------------------------------------------------------------
    def _csr(self, a) -> sp.csr_matrix | None:
        if a is None:
            return None
        a = sp.csr_matrix(a, dtype=np.float32)
        if a.shape != (self.n_items, self.n_items):
            return None
        return a

    def _item_table(self, table: pd.DataFrame | None) -> None:
        n = self.n_items
        self.category_codes = np.full(n, -1, dtype=np.int32)
        self.categories: list[str] = []
        self.category_index: dict[str, int] = {}
        self.prices = np.full(n, np.nan, dtype=np.float64)
        self.tiers = np.full(n, np.nan, dtype=np.float64)
        self.tier_labels: dict[int, str] = {}
        self.names: list[str | None] = [None] * n
        self.price_list: list[float | None] = [None] * n
        self.images: list[str | None] = [None] * n
        self.links: list[str | None] = [None] * n
        if table is None or "item_id" not in table.columns or len(table) == 0:
            return
        idx = self.art.items.index_of(table["item_id"].to_numpy(), missing="ignore")
        ok = idx >= 0
        t = table[ok]
        idx = idx[ok]
        if "category" in t.columns:
            cats = t["category"].astype("string").fillna("")
            codes, uniques = pd.factorize(cats)
            self.categories = [str(u) for u in uniques]
            self.category_index = {c: i for i, c in enumerate(self.categories) if c}
            codes = np.where(cats.to_numpy() == "", -1, codes)
            self.category_codes[idx] = codes
        if "price" in t.columns:
            price = pd.to_numeric(t["price"], errors="coerce")
            self.prices[idx] = price.to_numpy(dtype=float, na_value=np.nan)
        if "price_tier" in t.columns:
            tier = t["price_tier"]
            if isinstance(tier.dtype, pd.CategoricalDtype) and tier.cat.ordered:
                vals = tier.cat.codes.to_numpy().astype(float)
                vals[vals < 0] = np.nan
                self.tier_labels = dict(enumerate(str(c) for c in tier.cat.categories))
            else:
                vals = pd.to_numeric(tier, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                if np.isnan(vals).all() and tier.notna().any():
                    order = {"low": 0, "budget": 0, "mid": 1, "medium": 1, "standard": 1,
                             "high": 2, "premium": 3}
                    vals = tier.astype(str).str.lower().map(order).to_numpy(float)
                    self.tier_labels = {v: k for k, v in order.items()}
            self.tiers[idx] = vals
        if "price" in t.columns:
            self.price_list = [None if not np.isfinite(v) else round(float(v), 2)
                               for v in self.prices.tolist()]
        for col, target in (("image_url", self.images), ("image", self.images),
                            ("url", self.links), ("item_url", self.links)):
            if col in t.columns:
                vals = t[col].astype("string").fillna("").to_numpy()
                for i, v in zip(idx.tolist(), vals.tolist(), strict=True):
                    target[i] = v or target[i]
        if "item_name" in t.columns:
            names = t["item_name"].astype("string").fillna("").to_numpy()
            for i, nm in zip(idx.tolist(), names.tolist(), strict=True):
                self.names[i] = nm or None

    # ---- ids ----------------------------------------------------------------------
    @staticmethod
    def _key(value, numeric: bool):
        if numeric:
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value
            try:
                f = float(str(value).strip())
            except ValueError:
                return None
            return int(f) if f.is_integer() else None
        return str(value)

    def customer_row(self, customer_id) -> int:
        """Row of a customer, or -1 when the model does not know them."""
        if customer_id is None:
            return -1
        return self._cust_index.get(self._key(customer_id, self._cust_numeric), -1)

    def item_rows(self, item_ids) -> tuple[np.ndarray, list]:
        """Indices of known ``item_ids`` (order kept, duplicates dropped) and the unknown ids."""
        out: list[int] = []
        unknown: list = []
        seen: set[int] = set()
        for v in item_ids or ():
            i = self._item_index.get(self._key(v, self._item_numeric), -1)
            if i < 0:
                unknown.append(v)
            elif i not in seen:
                seen.add(i)
                out.append(i)
        return np.asarray(out, dtype=np.int64), unknown

    def item_id(self, idx: int):
        return self._item_id_list[idx]

    def item_label(self, idx: int) -> str:
        label = self._labels[idx]
        if label is None:  # cached: a list's reasons name the same few history items
            name = self.names[idx]
            label = f"{name} ({self._item_id_list[idx]})" if name else str(self._item_id_list[idx])
            self._labels[idx] = label
        return label

    def mask(self, filters: Filters | None, warnings: list[str]) -> np.ndarray | None:
        return filter_mask(
            filters,
            category_codes=self.category_codes,
            category_index=self.category_index,
            prices=self.prices,
            lookup_items=self.item_rows,
            warnings=warnings,
        )

    # ---- scoring ------------------------------------------------------------------
    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """:func:`features.scoring.fold_in` with ``Y^T Y`` computed once per model."""
        if self._YtY is None:
            return scoring.fold_in(self.art, history)
        history = sp.csr_matrix(history)
        Y, YtY = self._Y64, self._YtY
        alpha = float(self.art.params.get("alpha", 1.0))
        out = np.zeros((history.shape[0], Y.shape[1]), dtype=np.float32)
        for r in range(history.shape[0]):  # one small solve per cold row (cart-sized)
            lo, hi = history.indptr[r], history.indptr[r + 1]
            if lo == hi:
                continue
            Yi = Y[history.indices[lo:hi]]
            c = alpha * history.data[lo:hi].astype(np.float64)
            A = YtY + (Yi * (c - 1.0)[:, None]).T @ Yi
            out[r] = np.linalg.solve(A, (Yi * c[:, None]).sum(axis=0))
        return out

    def _history_with(self, row: int, context: np.ndarray) -> sp.csr_matrix:
        """The customer's training history (if any) plus context items (weight 1 or more)."""
        if row >= 0:
            lo, hi = self.history.indptr[row], self.history.indptr[row + 1]
            idx, val = self.history.indices[lo:hi], self.history.data[lo:hi]
        else:
            idx, val = np.empty(0, np.int32), np.empty(0, np.float32)
        if len(context):
            idx = np.concatenate([idx, context.astype(idx.dtype)])
            val = np.concatenate([val, np.full(len(context), self._context_weight, np.float32)])
        uniq, inv = np.unique(idx, return_inverse=True)
        vals = np.zeros(len(uniq), dtype=np.float32)
        np.maximum.at(vals, inv, val)
        return sp.csr_matrix((vals, uniq, np.array([0, len(uniq)])), shape=(1, self.n_items))

    def score_row(self, row: int, context: np.ndarray) -> tuple[np.ndarray, str]:
        """Scores of all items for one customer (row -1 = unknown) and the strategy used."""
        if row < 0 and not len(context):
            return self.popularity.copy(), "popularity"
        if self.kind == "factors":
            if not len(context):
                return self.U[row] @ self.Yt, "personalised"
            users = self.fold_in(self._history_with(row, context))
            return users[0] @ self.Yt, ("context" if row >= 0 else "folded_in")
        if self.kind == "popularity":
            return self.popularity.copy(), "popularity"
        rows = np.array([row])
        hist = self._history_with(row, context)
        s = scoring.score(self.art, rows, hist)[0]
        if row >= 0:
            return s, ("context" if len(context) else "personalised")
        return s, ("item_knn" if self.cf_kind == "item_item" else "folded_in")

    @staticmethod
    def _top(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(min(n, s.shape[0]))
        if n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        m = s.shape[0]
        part = np.argpartition(s, m - n)[m - n:] if n < m else np.arange(m)
        part = part[np.argsort(-s[part], kind="stable")]
        vals = s[part]
        keep = np.isfinite(vals)
        return part[keep].astype(np.int64), vals[keep].astype(np.float32)

    # ---- explanations -------------------------------------------------------------
    def _build_sources(self) -> None:
        """Each customer's :data:`REASON_SOURCES` strongest history items (weight order,
        stable), once per model: ``_src_indptr`` / ``_src_items``."""
        h = self.history
        n_c = h.shape[0]
        counts = np.diff(h.indptr)
        rows = np.repeat(np.arange(n_c, dtype=np.int64), counts)
        order = np.lexsort((-h.data, rows))  # by row, then weight descending; stable
        pos = np.arange(len(order)) - np.repeat(h.indptr[:-1], counts)
        take = order[pos < REASON_SOURCES]
        self._src_items = h.indices[take].astype(np.int64)
        self._src_indptr = np.zeros(n_c + 1, dtype=np.int64)
        np.cumsum(np.minimum(counts, REASON_SOURCES), out=self._src_indptr[1:])

    def _sources(self, row: int, context: np.ndarray) -> np.ndarray:
        ctx = np.asarray(context[:REASON_SOURCES], dtype=np.int64)
        if row < 0 or len(ctx) >= REASON_SOURCES:
            return ctx
        hist = self._src_items[self._src_indptr[row]:self._src_indptr[row + 1]]
        if not len(ctx):
            return hist
        return np.concatenate([ctx, hist[: REASON_SOURCES - len(ctx)]])

    def _similarity_block(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        if not len(sources) or not len(targets):
            return None
        if self.Yn is not None:
            return self.Yn[sources] @ self.Yn[targets].T
        if self.similarity is not None:
            S = self.similarity
            block = S[sources][:, targets]
            return block.toarray() if sp.issparse(block) else np.asarray(block)
        return None

    def _best_sources(self, sources: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per item, the most similar source item (-1: none with a positive similarity)."""
        block = self._similarity_block(sources, items)
        if block is None:
            return np.full(len(items), -1, dtype=np.int64)
        return np.where(block.max(axis=0) > 0, sources[block.argmax(axis=0)], -1)

    def _similar_reasons(self, best: np.ndarray) -> list[str | None]:
        """ "similar to Y" for each best source item (None where -1); texts cached."""
        out = self._similar_text[best].tolist()
        for k, b in enumerate(best.tolist()):
            if out[k] is None and b >= 0:
                out[k] = self._similar_text[b] = f"similar to {self.item_label(b)}"
        return out

    def reasons(self, row: int, context: np.ndarray, items: np.ndarray) -> list[str | None]:
        """A short reason per item: "bought with X" (cart rules), else "similar to Y"."""
        if not len(items):
            return []
        out = self._similar_reasons(self._best_sources(self._sources(row, context), items))
        if len(context) and self.xsell_lift is not None:
            block = self.xsell_lift[context][:, items].toarray()
            best = block.argmax(axis=0)
            for j in np.flatnonzero(block.max(axis=0) > 1.0):
                out[j] = f"bought with {self.item_label(int(context[best[j]]))}"
        return out

    # ---- endpoints ----------------------------------------------------------------
    def recommend(
        self,
        customer_id,
        n: int = 10,
        *,
        exclude_bought: bool = True,
        context_items=None,
        filters: Filters | None = None,
        stage_aware: bool = True,
    ) -> Result:
        """Top-n for a customer. ``stage_aware``: a half-asleep or sleeping customer (NES S2 /
        S3, from the artifact's customer tables) without context items gets up to half the
        list (at least one item) from their own favourites first, even with
        ``exclude_bought`` (which still applies to the rest); strategy ``winback``."""
        warnings: list[str] = []
        row = self.customer_row(customer_id)
        context, unknown = self.item_rows(context_items)
        if unknown:
            warnings.append(f"context_items: unknown item ids ignored {_shown(unknown)}")
        if customer_id is not None and row < 0:
            warnings.append("customer_id: unknown customer")
        allowed = self.mask(filters, warnings)
        if stage_aware and row >= 0 and not len(context) and self._fav_indptr[-1]:
            won = self._winback(row, n, exclude_bought, allowed, warnings)
            if won is not None:
                return won
        return self._ranked(row, context, n, exclude_bought, allowed, warnings)

    def _ranked(self, row: int, context: np.ndarray, n: int, exclude_bought: bool, allowed,
                warnings: list[str]) -> Result:
        """The model's top-n for a customer row (-1: none) and context item indices."""
        if row >= 0 and not len(context) and self._topk is not None:
            hit = self._from_cache(row, n, exclude_bought, allowed)
            if hit is not None:
                items, scores, reasons = hit  # reasons as self.reasons(row, context, items)
                return Result(items, scores, reasons, "personalised", warnings)
        s, strategy = self.score_row(row, context)
        s = np.asarray(s, dtype=np.float32)
        if not s.flags.writeable:
            s = s.copy()
        if exclude_bought and row >= 0:
            lo, hi = self.history.indptr[row], self.history.indptr[row + 1]
            s[self.history.indices[lo:hi]] = NEG_INF
        if len(context):
            s[context] = NEG_INF
        if allowed is not None:
            s[~allowed] = NEG_INF
        items, scores = self._top(s, n)
        if strategy == "popularity":
            reasons: list[str | None] = ["popular"] * len(items)
        else:
            reasons = self.reasons(row, context, items)
        return Result(items, scores, reasons, strategy, warnings)

    def recommend_batch(
        self,
        customer_ids: list,
        n: int = 10,
        *,
        exclude_bought: bool = True,
        filters: Filters | None = None,
        stage_aware: bool = True,
    ) -> tuple[list[Result], list[str]]:
        """For each customer the list :meth:`recommend` gives (no context items): win-back
        and cached lists row by row, every other known customer from one matrix product,
        unknown ones the popularity list."""
        warnings: list[str] = []
        rows = np.asarray([self.customer_row(c) for c in customer_ids], dtype=np.int64)
        known = rows >= 0
        if (~known).any():
            unknown = [c for c, k in zip(customer_ids, known, strict=True) if not k]
            warnings.append(f"customer_ids: unknown customers get popularity {_shown(unknown)}")
        allowed = self.mask(filters, warnings)
        results: list[Result | None] = [None] * len(rows)
        todo: list[int] = []
        winback = stage_aware and bool(self._fav_indptr[-1])
        for i, r in enumerate(rows.tolist()):
            if r < 0:
                continue
            if winback:
                won = self._winback(r, n, exclude_bought, allowed, [])
                if won is not None:
                    results[i] = won
                    continue
            hit = self._from_cache(r, n, exclude_bought, allowed) if self._topk else None
            if hit is not None:
                results[i] = Result(*hit, "personalised")
            else:
                todo.append(i)
        strategy = "popularity" if self.kind == "popularity" else "personalised"
        for lo in range(0, len(todo), BATCH_BLOCK):  # matrix products of bounded size
            block = todo[lo:lo + BATCH_BLOCK]
            kr = rows[block]
            if self.kind == "factors":
                S = self.U[kr] @ self.Yt
            else:
                S = scoring.score(self.art, kr)
            S = np.asarray(S, dtype=np.float32)
            exclude = scoring.history_rows(self.art, kr) if exclude_bought else None
            idx, vals = scoring.top_k(S, n, exclude=exclude, allowed=allowed)
            del S
            for i, r, it, v in zip(block, kr.tolist(), idx, vals, strict=True):
                keep = it >= 0
                items, scores = it[keep].astype(np.int64), v[keep]
                reasons = (["popular"] * len(items) if strategy == "popularity"
                           else self.reasons(r, _NO_ITEMS, items))
                results[i] = Result(items, scores, reasons, strategy)
        if (~known).any():
            pop = self._ranked(-1, _NO_ITEMS, n, exclude_bought, allowed, [])
            for i in np.flatnonzero(~known).tolist():
                results[i] = Result(pop.items, pop.scores, list(pop.reasons), pop.strategy)
        return results, warnings

    def _known_items(self, item_ids, warnings: list[str]) -> np.ndarray:
        """Indices of the known ``item_ids``; unknown ones warned about; none known: KeyError."""
        ids = [item_ids] if not isinstance(item_ids, list | tuple) else list(item_ids)
        rows, unknown = self.item_rows(ids)
        if not len(rows):
            raise KeyError(f"item_ids: no known item among {_shown(ids)}")
        if unknown:
            warnings.append(f"item_ids: unknown item ids ignored {_shown(unknown)}")
        return rows

    def similar(self, item_ids, n: int = 10, filters: Filters | None = None) -> Result:
        """Items most similar to any of ``item_ids`` (an id or a list), those left out."""
        warnings: list[str] = []
        rows = self._known_items(item_ids, warnings)
        i = int(rows[0])
        if self.Yn is not None:
            s = (self.Yn[rows] @ self.Yn.T).max(axis=0)
        else:
            s = scoring.item_similarity(self.art, rows).max(axis=0)
        s = np.asarray(s, dtype=np.float32).copy()
        s[rows] = NEG_INF
        allowed = self.mask(filters, warnings)
        if allowed is not None:
            s[~allowed] = NEG_INF
        items, scores = self._top(s, n)
        keep = scores > 0
        items, scores = items[keep], scores[keep]
        if len(rows) == 1:
            reasons = [f"similar to {self.item_label(i)}"] * len(items)
        else:
            reasons = self._similar_reasons(self._best_sources(rows, items))
        return Result(items, scores, reasons, "similar", warnings)

    def _personal(self, customer_id, cands: np.ndarray, warnings: list[str]) -> np.ndarray | None:
        """The customer's model scores for ``cands`` (None: no or unknown customer)."""
        if customer_id is None:
            return None
        row = self.customer_row(customer_id)
        if row < 0:
            warnings.append("customer_id: unknown customer, list not personalised")
            return None
        if self.kind == "factors":
            return self.U[row] @ self.Yt[:, cands]
        s, _ = self.score_row(row, np.empty(0, np.int64))
        return np.asarray(s, dtype=np.float32)[cands]

    def _blend(self, base: np.ndarray, personal: np.ndarray | None) -> np.ndarray:
        if personal is None:
            return base
        return (0.7 * _unit(base) + 0.3 * _unit(personal)).astype(np.float32)

    def _keep(self, cands: np.ndarray, filters: Filters | None, warnings: list[str]):
        allowed = self.mask(filters, warnings)
        return cands if allowed is None else cands[allowed[cands]]

    def _rules(self, basket: np.ndarray):
        """Mined rules from the basket items: (consequent, lift, confidence, antecedent),
        one row per consequent (its strongest rule)."""
        L = self.xsell_lift
        lo, hi = L.indptr[basket], L.indptr[basket + 1]
        sel = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) if len(
            basket) > 1 else np.arange(lo[0], hi[0])
        cons = L.indices[sel].astype(np.int64)
        lift = L.data[sel]
        src = np.repeat(basket, hi - lo)
        if self._conf_aligned:
            conf = self.xsell_conf.data[sel]
        elif self.xsell_conf is not None:
            conf = np.asarray(self.xsell_conf[src, cons]).ravel().astype(np.float32)
        else:
            conf = np.zeros(len(sel), np.float32)
        if len(basket) > 1 and len(cons):
            order = np.lexsort((-lift, cons))
            cons, lift, conf, src = cons[order], lift[order], conf[order], src[order]
            first = np.r_[True, cons[1:] != cons[:-1]]
            cons, lift, conf, src = cons[first], lift[first], conf[first], src[first]
        return cons, lift, conf, src

    def cross_sell(
        self,
        item_ids: list,
        n: int = 10,
        *,
        customer_id=None,
        include_substitutes: bool = False,
        filters: Filters | None = None,
    ) -> Result:
        """Complements of an item or basket: items bought in the same orders far more often
        than chance (lift > 1, from the artifact's mined rules). Substitutes (same category,
        rarely in the same order: confidence < ``COMPLEMENT_MIN_CONFIDENCE``) are left out
        unless ``include_substitutes``."""
        warnings: list[str] = []
        basket, unknown = self.item_rows(item_ids)
        if unknown:
            warnings.append(f"item_ids: unknown item ids ignored {_shown(unknown)}")
        if not len(basket):
            raise KeyError("item_ids: no known item")
        cats = self.category_codes[basket]
        cats = cats[cats >= 0]
        strategy = "cross_sell"
        cands = np.empty(0, np.int64)
        if self.xsell_lift is not None:
            cons, lift, conf, src = self._rules(basket)
            ok = (lift > 1.0) & ~np.isin(cons, basket)
            if not include_substitutes and len(cats):
                ok &= ~(np.isin(self.category_codes[cons], cats) & (conf < COMPLEMENT_MIN_CONFIDENCE))
            cons, lift, conf, src = cons[ok], lift[ok], conf[ok], src[ok]
            allowed = self.mask(filters, warnings)
            if allowed is not None:
                keep = allowed[cons]
                cons, lift, conf, src = cons[keep], lift[keep], conf[keep], src[keep]
            cands, base = cons, (lift + np.float32(1e-3) * conf).astype(np.float32)
            reasons_src = src
        if not len(cands):
            # no mined rules for these items: similar items (other categories) instead
            strategy = "similar_fallback"
            warnings.append("no cross-sell rules for these items; similar items instead")
            sims = self._similarity_block(basket, np.arange(self.n_items))
            if sims is None:
                sims = scoring.item_similarity(self.art, basket)
            sims = np.asarray(sims, dtype=np.float32)
            best = sims.max(axis=0)
            ok = best > 0
            ok[basket] = False
            if not include_substitutes and len(cats):
                ok &= ~np.isin(self.category_codes, cats)
            cands = self._keep(np.flatnonzero(ok), filters, warnings)
            base = best[cands]
            reasons_src = basket[sims[:, cands].argmax(axis=0)] if len(cands) else cands
        personal = self._personal(customer_id, cands, warnings)
        if personal is not None:
            strategy += "+personalised"
        score = self._blend(base, personal)
        top, vals = self._top(score, n)
        verb = "bought with" if strategy.startswith("cross_sell") else "similar to"
        reasons = [f"{verb} {self.item_label(int(b))}" for b in reasons_src[top]]
        return Result(cands[top], vals, reasons, strategy, warnings)

    def up_sell(
        self, item_ids, n: int = 10, *, customer_id=None, filters: Filters | None = None
    ) -> Result:
        """Same category, higher price tier (never cheaper), most similar first; for several
        items, the upgrades of each, best first (each candidate once)."""
        warnings: list[str] = []
        rows = self._known_items(item_ids, warnings)
        if len(rows) > 1:
            parts = [self.up_sell([self.item_id(int(r))], n, customer_id=customer_id,
                                  filters=filters) for r in rows]
            items = np.concatenate([p.items for p in parts]) if parts else np.empty(0, np.int64)
            scores = np.concatenate([p.scores for p in parts]) if parts else np.empty(0, np.float32)
            reasons = [r for p in parts for r in p.reasons]
            order = np.argsort(-scores, kind="stable")
            _, first = np.unique(items[order], return_index=True)
            take = order[np.sort(first)][:n]
            take = take[np.argsort(-scores[take], kind="stable")]
            strategy = parts[0].strategy if parts else "up_sell"
            warnings += [w for p in parts for w in p.warnings if w not in warnings]
            return Result(items[take], scores[take], [reasons[k] for k in take.tolist()],
                          strategy, warnings)
        i = int(rows[0])
        cat, price, tier = self.category_codes[i], self.prices[i], self.tiers[i]
        if cat < 0 or not np.isfinite(price):
            warnings.append("item has no category or price in the model's item table")
            return Result(np.empty(0, np.int64), np.empty(0, np.float32), [], "up_sell", warnings)
        cands = self._members[cat]
        with np.errstate(invalid="ignore"):
            ok = self.prices[cands] > price
            if np.isfinite(tier):
                ok &= self.tiers[cands] > tier
        cands = self._keep(cands[ok], filters, warnings)
        if self.Yn is not None:
            base = self.Yn[cands] @ self.Yn[i]
        else:
            sims = self._similarity_block(rows, cands)
            if sims is None:
                sims = scoring.item_similarity(self.art, rows)[:, cands]
            base = np.asarray(sims, dtype=np.float32)[0]
        strategy = "up_sell"
        personal = self._personal(customer_id, cands, warnings)
        if personal is not None:
            strategy += "+personalised"
        top, vals = self._top(self._blend(np.asarray(base, np.float32), personal), n)
        items = cands[top]
        label = self.item_label(i)
        reasons = []
        for j in items.tolist():
            t = self.tiers[j]
            tl = self.tier_labels.get(int(t), str(int(t))) if np.isfinite(t) else None
            extra = f"{tl} tier, " if tl is not None else ""
            reasons.append(f"upgrade of {label}: {extra}price {self.prices[j]:.2f}")
        return Result(items, vals, reasons, strategy, warnings)

    # ---- checks -------------------------------------------------------------------
    def check(self) -> dict:
        """Sanity check before serving: finite scores, and a known customer gets a list."""
        if self.n_items == 0:
            raise EngineCheckError("model has no items")
        if not np.isfinite(self.popularity).all():
            raise EngineCheckError("popularity scores are not finite")
        counts = np.diff(self.history.indptr)
        if len(counts) == 0:
            raise EngineCheckError("model knows no customers")
        row = int(np.argmax(counts))
        s, _ = self.score_row(row, np.empty(0, np.int64))
        if not np.isfinite(np.asarray(s)).all():
            raise EngineCheckError(f"scores for customer row {row} are not finite")
        res = self.recommend(self.art.customers.ids[row].item(), 10, exclude_bought=False)
        if len(res.items) == 0:
            raise EngineCheckError("recommend for a known customer returned nothing")
        return {"customer_row": row, "items": len(res.items)}  # no raw id leaves the model
