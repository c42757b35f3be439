"""RFM values, scores, codes, the eight value segments and the named segments on hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from features.customers import (
    CustomerDataWarning,
    RFMConfig,
    named_segments,
    quintile_scores,
    rfm_table,
    rfm_values,
    value_segments,
)
from features.errors import PatronError


def _log() -> pd.DataFrame:
    rows = [  # customer, item, day, qty, price, order
        ("A", "x", "2024-01-30", 2, 5.0, 1), ("A", "y", "2024-01-30", 1, 10.0, 1),
        ("A", "x", "2024-01-20", 1, 30.0, 2),
        ("B", "z", "2024-01-01", 1, 100.0, 3),
        ("C", "x", "2024-01-25", 1, 5.0, 4), ("C", "x", "2024-01-26", 1, 5.0, 5),
        ("C", "x", "2024-01-27", 1, 5.0, 6),
        ("D", "y", "2024-01-10", 1, 20.0, 7),
        ("E", "y", "2024-01-31", 2, 1.0, 8),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp", "quantity", "price",
                                     "order_id"])
    df["timestamp"] = pd.to_datetime(df["timestamp"]) + pd.Timedelta(hours=10)
    df["quantity"] = df["quantity"].astype(float)
    return df


def test_rfm_values_scores_codes_and_segments_by_hand():
    t = rfm_table(_log())  # default reference date: 2024-02-01, the day after the last purchase
    assert t["recency"].to_dict() == {"A": 2, "B": 31, "C": 5, "D": 22, "E": 1}
    assert t["frequency"].to_dict() == {"A": 2, "B": 1, "C": 3, "D": 1, "E": 1}
    assert t["monetary"].to_dict() == {"A": 50.0, "B": 100.0, "C": 15.0, "D": 20.0, "E": 2.0}
    assert t["rfm_code"].to_dict() == {"A": "444", "B": "125", "C": "352", "D": "223", "E": "521"}
    assert t["value_segment"].to_dict() == {
        "A": "important value", "B": "important retain", "C": "general value",
        "D": "general retain", "E": "general develop",
    }
    assert t.loc["B", "value_segment_zh"] == "重要挽留客戶"
    assert t["segment"].to_dict() == {
        "A": "champions", "B": "lost", "C": "loyal", "D": "hibernating", "E": "potential loyalists",
    }


def test_reference_date_in_the_middle_ignores_later_purchases_and_window():
    t = rfm_values(_log(), "2024-01-26")  # C's 26th and 27th, A's 30th, E's 31st drop out
    assert set(t.index) == {"A", "B", "C", "D"}
    assert t.loc["A", "recency"] == 6 and t.loc["A", "frequency"] == 1
    assert t.loc["C", "frequency"] == 1 and t.loc["C", "monetary"] == 5.0
    w = rfm_values(_log(), config=RFMConfig(window_days=10))  # from 2024-01-22 on
    assert w.loc["A", "frequency"] == 1 and w.loc["A", "monetary"] == 20.0
    assert w.loc["B", "frequency"] == 0 and w.loc["B", "monetary"] == 0.0
    assert w.loc["B", "recency"] == 31  # recency looks at all history


def test_frequency_counts_customer_days_without_order_id():
    df = _log().drop(columns="order_id")
    assert rfm_values(df)["frequency"].to_dict() == {"A": 2, "B": 1, "C": 3, "D": 1, "E": 1}


def test_quintile_scores_ties_and_small_populations():
    ten = pd.Series(np.arange(10.0))
    assert quintile_scores(ten).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(pd.Series([3.0, 1.0, 2.0])).tolist() == [5, 1, 3]
    assert quintile_scores(pd.Series([7.0])).tolist() == [3]
    ties = quintile_scores(pd.Series([1.0] * 6 + [2.0, 3.0, 4.0, 5.0]))
    assert ties.iloc[:6].nunique() == 1 and ties.iloc[0] == 2  # a tie group shares its middle score
    assert quintile_scores(ten, higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_all_eight_value_segments():
    combos = list(itertools.product([True, False], repeat=3))  # (R high, F high, M high)
    rfm = pd.DataFrame(
        {
            "recency": [1 if r else 100 for r, _, _ in combos],
            "frequency": [10 if f else 1 for _, f, _ in combos],
            "monetary": [500.0 if m else 5.0 for _, _, m in combos],
        }
    )
    seg = value_segments(rfm)
    expected = {
        (True, True, True): ("important value", "重要價值客戶"),
        (True, False, True): ("important develop", "重要發展客戶"),
        (False, True, True): ("important maintain", "重要保持客戶"),
        (False, False, True): ("important retain", "重要挽留客戶"),
        (True, True, False): ("general value", "一般價值客戶"),
        (True, False, False): ("general develop", "一般發展客戶"),
        (False, True, False): ("general maintain", "一般保持客戶"),
        (False, False, False): ("general retain", "一般挽留客戶"),
    }
    for i, c in enumerate(combos):
        assert (seg["value_segment"].iloc[i], seg["value_segment_zh"].iloc[i]) == expected[c]


@pytest.mark.parametrize(
    ("r", "f", "m", "name"),
    [
        (5, 5, 5, "champions"), (4, 4, 4, "champions"),
        (1, 5, 5, "can't lose them"), (2, 4, 4, "can't lose them"),
        (3, 5, 5, "loyal"), (5, 4, 1, "loyal"),
        (2, 3, 5, "at risk"), (1, 4, 2, "at risk"),
        (3, 2, 1, "potential loyalists"), (5, 3, 5, "potential loyalists"),
        (4, 1, 5, "new"), (5, 1, 1, "new"),
        (3, 1, 4, "hibernating"), (2, 2, 2, "hibernating"),
        (1, 2, 5, "lost"), (1, 1, 1, "lost"),
    ],
)
def test_named_segment_rules(r, f, m, name):
    scored = pd.DataFrame({"r_score": [r], "f_score": [f], "m_score": [m]})
    assert named_segments(scored).iloc[0] == name


def test_every_score_combination_gets_a_named_segment():
    grid = pd.DataFrame(list(itertools.product(range(1, 6), repeat=3)),
                        columns=["r_score", "f_score", "m_score"])
    names = named_segments(grid)
    assert names.notna().all() and set(names) == {
        "champions", "loyal", "potential loyalists", "new", "at risk", "can't lose them",
        "hibernating", "lost",
    }


def test_reference_date_before_the_data_is_a_patron_error():
    with pytest.raises(PatronError, match="2023-12-01.*2024-01-01"):
        rfm_table(_log(), "2023-12-01")
    with pytest.raises(PatronError, match="not a date"):
        rfm_table(_log(), "yesterday-ish")


def test_without_prices_monetary_comes_from_quantity_with_a_warning():
    with pytest.warns(CustomerDataWarning, match="price"):
        t = rfm_values(_log().drop(columns="price"))
    assert t.loc["A", "monetary"] == 4.0 and t.loc["E", "monetary"] == 2.0
