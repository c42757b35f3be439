"""RFM per customer: values, 1-5 scores, the RFM code, the eight value segments and named segments.

Values (as of the reference date, default the day after the last purchase):

* ``recency``: days from the last purchase day to the reference date (bought the day before = 1).
* ``frequency``: distinct orders (baskets) in the window; customer-days when there is no order_id.
* ``monetary``: spend in the window, quantity x unit price (quantity when there are no prices).

Scores (quintiles of the mid-point percentile rank): ``score = 1 + floor(5 * (midrank - 0.5) / n)``
over the ``n`` customers, where ``midrank`` is the average rank (``rank(method="average")``),
ascending for F and M and descending for R (fewest days = 5). Ten distinct values give two
customers per score; equal values always get equal scores, and a tie group gets the score of
its middle (e.g. if 60% of customers bought once, all of them get F = 2). Scores lie in 1..5
for any population: three customers get 1, 3, 5; a single customer gets 3 (middling, not best).
``rfm_code`` is the three digits, e.g. "545".

Value segments (八大客戶價值分類) compare the raw values with the population mean:
R high = fewer days than the mean recency, F high = more orders than the mean, M high = more
spend than the mean (values equal to the mean count as low).

==========  ==========  ==========  ====================  ==============
R           F           M           value segment         中文
==========  ==========  ==========  ====================  ==============
high        high        high        important value       重要價值客戶
high        low         high        important develop     重要發展客戶
low         high        high        important maintain    重要保持客戶
low         low         high        important retain      重要挽留客戶
high        high        low         general value         一般價值客戶
high        low         low         general develop       一般發展客戶
low         high        low         general maintain      一般保持客戶
low         low         low         general retain        一般挽留客戶
==========  ==========  ==========  ====================  ==============

Named segments, on the scores, first matching rule wins (together they cover every customer):

1. champions: R >= 4, F >= 4, M >= 4
2. can't lose them: R <= 2, F >= 4, M >= 4
3. loyal: R >= 3, F >= 4
4. at risk: R <= 2, F >= 3
5. potential loyalists: R >= 3, F in 2..3
6. new: R >= 4, F = 1
7. hibernating: R in 2..3 (with F <= 2; R = 3 only with F = 1)
8. lost: R = 1 (with F <= 2)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import columns as C
from features.customers.config import RFMConfig
from features.customers.prep import DAY, ORDER, prepare

RECENCY, FREQUENCY, MONETARY = "recency", "frequency", "monetary"
R_SCORE, F_SCORE, M_SCORE = "r_score", "f_score", "m_score"
RFM_CODE = "rfm_code"
FIRST_PURCHASE, LAST_PURCHASE = "first_purchase", "last_purchase"
VALUE_SEGMENT, VALUE_SEGMENT_ZH, NAMED_SEGMENT = "value_segment", "value_segment_zh", "segment"

# (R high, F high, M high) -> (English, Chinese)
VALUE_SEGMENTS: dict[tuple[bool, bool, bool], tuple[str, str]] = {
    (True, True, True): ("important value", "重要價值客戶"),
    (True, False, True): ("important develop", "重要發展客戶"),
    (False, True, True): ("important maintain", "重要保持客戶"),
    (False, False, True): ("important retain", "重要挽留客戶"),
    (True, True, False): ("general value", "一般價值客戶"),
    (True, False, False): ("general develop", "一般發展客戶"),
    (False, True, False): ("general maintain", "一般保持客戶"),
    (False, False, False): ("general retain", "一般挽留客戶"),
}
VALUE_SEGMENT_ORDER = [en for en, _ in VALUE_SEGMENTS.values()]
VALUE_SEGMENT_ZH_OF = {en: zh for en, zh in VALUE_SEGMENTS.values()}
NAMED_SEGMENTS = [
    "champions", "loyal", "potential loyalists", "new",
    "at risk", "can't lose them", "hibernating", "lost",
]


def rfm_values(
    purchases: pd.DataFrame,
    reference_date: object = None,
    config: RFMConfig | None = None,
    *,
    prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Recency, frequency, monetary (and first/last purchase day) per customer, indexed by id.

    ``prepared`` reuses the output of :func:`features.customers.prep.prepare`.
    """
    config = config or RFMConfig()
    lines, ref = prepared if prepared is not None else prepare(purchases, reference_date)
    g = lines.groupby(C.CUSTOMER_ID, sort=True)
    out = pd.DataFrame({FIRST_PURCHASE: g[DAY].min(), LAST_PURCHASE: g[DAY].max()})
    out[RECENCY] = (ref - out[LAST_PURCHASE]).dt.days.astype(np.int64)
    window = lines
    if config.window_days is not None:
        window = lines[lines[DAY] >= ref - pd.Timedelta(days=config.window_days)]
    orders = window.drop_duplicates([C.CUSTOMER_ID, ORDER]).groupby(C.CUSTOMER_ID).size()
    out[FREQUENCY] = orders.reindex(out.index, fill_value=0).astype(np.int64)
    out[MONETARY] = window.groupby(C.CUSTOMER_ID)[C.SPEND].sum().reindex(out.index, fill_value=0.0)
    out.index.name = C.CUSTOMER_ID
    return out


def quintile_scores(values: pd.Series, *, higher_is_better: bool = True) -> pd.Series:
    """1-5 scores: ``1 + floor(5 * (midrank - 0.5) / n)``; ties share a score (module docstring)."""
    n = len(values)
    if n == 0:
        return pd.Series([], index=values.index, dtype=np.int8)
    ranks = values.rank(method="average", ascending=higher_is_better).to_numpy()
    scores = (1 + np.floor(5.0 * (ranks - 0.5) / n + 1e-9)).clip(1, 5).astype(np.int8)
    return pd.Series(scores, index=values.index)


def score_rfm(rfm: pd.DataFrame) -> pd.DataFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` and ``rfm_code`` to an :func:`rfm_values` table."""
    out = rfm.copy()
    out[R_SCORE] = quintile_scores(out[RECENCY], higher_is_better=False)
    out[F_SCORE] = quintile_scores(out[FREQUENCY])
    out[M_SCORE] = quintile_scores(out[MONETARY])
    out[RFM_CODE] = (
        out[R_SCORE].astype(str) + out[F_SCORE].astype(str) + out[M_SCORE].astype(str)
    )
    return out


def value_segments(rfm: pd.DataFrame) -> pd.DataFrame:
    """The eight value segments (English and Chinese) against the population means."""
    r_high = (rfm[RECENCY] < rfm[RECENCY].mean()).to_numpy()
    f_high = (rfm[FREQUENCY] > rfm[FREQUENCY].mean()).to_numpy()
    m_high = (rfm[MONETARY] > rfm[MONETARY].mean()).to_numpy()
    code = r_high.astype(np.int8) * 4 + f_high.astype(np.int8) * 2 + m_high.astype(np.int8)
    en = np.empty(8, dtype=object)
    zh = np.empty(8, dtype=object)
    for (r, f, m), (e, z) in VALUE_SEGMENTS.items():
        en[r * 4 + f * 2 + m] = e
        zh[r * 4 + f * 2 + m] = z
    return pd.DataFrame(
        {VALUE_SEGMENT: en[code], VALUE_SEGMENT_ZH: zh[code]}, index=rfm.index
    )


def named_segments(scored: pd.DataFrame) -> pd.Series:
    """Named segment per customer from the R/F/M scores (rules in the module docstring)."""
    r, f, m = (scored[c].to_numpy() for c in (R_SCORE, F_SCORE, M_SCORE))
    conditions = [
        (r >= 4) & (f >= 4) & (m >= 4),
        (r <= 2) & (f >= 4) & (m >= 4),
        (r >= 3) & (f >= 4),
        (r <= 2) & (f >= 3),
        (r >= 3) & (f >= 2),
        (r >= 4) & (f == 1),
        (r >= 2),
    ]
    choices = [
        "champions", "can't lose them", "loyal", "at risk",
        "potential loyalists", "new", "hibernating",
    ]
    return pd.Series(np.select(conditions, choices, default="lost"), index=scored.index,
                     name=NAMED_SEGMENT)


def rfm_table(
    purchases: pd.DataFrame,
    reference_date: object = None,
    config: RFMConfig | None = None,
    *,
    prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """RFM values, scores, code, value segment (EN + ZH) and named segment per customer."""
    scored = score_rfm(rfm_values(purchases, reference_date, config, prepared=prepared))
    out = scored.join(value_segments(scored))
    out[NAMED_SEGMENT] = named_segments(scored)
    return out


__all__ = [
    "RECENCY", "FREQUENCY", "MONETARY", "R_SCORE", "F_SCORE", "M_SCORE", "RFM_CODE",
    "FIRST_PURCHASE", "LAST_PURCHASE", "VALUE_SEGMENT", "VALUE_SEGMENT_ZH", "NAMED_SEGMENT",
    "VALUE_SEGMENTS", "VALUE_SEGMENT_ORDER", "VALUE_SEGMENT_ZH_OF", "NAMED_SEGMENTS",
    "rfm_values", "quintile_scores", "score_rfm", "value_segments", "named_segments", "rfm_table",
]
