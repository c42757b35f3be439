"""Replenishment reminders and their held-out precision/recall on a tiny hand-made case."""

from __future__ import annotations

import pandas as pd
import pytest

from features.customers import ReminderConfig, evaluate_reminders, reminders
from features.errors import PatronError
from features.synthetic import generate_purchases

HISTORY = [
    (1, "a", "2024-01-01"), (1, "a", "2024-01-08"), (1, "a", "2024-01-15"), (1, "a", "2024-01-22"),
    (1, "b", "2024-01-01"), (1, "b", "2024-01-15"),  # one gap of 14; item median 14
    (2, "a", "2024-01-20"), (2, "a", "2024-01-22"),  # one gap: item a median of (7, 2) = 4.5
    (2, "c", "2024-01-01"),  # bought once: never reminded
    (3, "d", "2024-01-01"), (3, "d", "2024-01-03"),  # interval 2, 23 days idle: lapsed
    (3, "e", "2024-01-01"), (3, "e", "2024-01-21"),  # interval 20: next due after the window
]
WINDOW = [  # cutoff 2024-01-26, horizon 7: window 2024-01-26 .. 2024-02-01
    (1, "a", "2024-01-29"), (2, "a", "2024-01-27"), (2, "c", "2024-01-28"),
    (3, "e", "2024-01-30"), (4, "f", "2024-01-31"),
]


def _log(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"]) + pd.Timedelta(hours=12)
    return df


def test_due_reminders_by_hand():
    rem = reminders(_log(HISTORY), "2024-01-26", ReminderConfig(horizon_days=7))
    pairs = set(zip(rem["customer_id"], rem["item_id"], strict=True))
    assert pairs == {(1, "a"), (1, "b"), (2, "a")}
    r = rem.set_index(["customer_id", "item_id"])
    assert r.loc[(1, "a"), "interval"] == 7 and r.loc[(1, "a"), "elapsed_days"] == 4
    assert r.loc[(1, "a"), "expected_next"] == pd.Timestamp("2024-01-29")
    assert r.loc[(1, "a"), "days_overdue"] == -3
    assert r.loc[(2, "a"), "interval"] == 4.5
    assert r.loc[(1, "b"), "days_overdue"] == -3  # 11 days since, interval 14
    # weekly a (4 purchase days, regular) outranks b (2 days, one gap)
    assert r.loc[(1, "a"), "reminder_rank"] == 1 and r.loc[(1, "b"), "reminder_rank"] == 2
    top1 = reminders(_log(HISTORY), "2024-01-26", ReminderConfig(horizon_days=7, max_per_customer=1))
    assert len(top1) == 2 and set(top1["item_id"]) == {"a"}


def test_evaluate_reminders_precision_and_recall_by_hand():
    ev = evaluate_reminders(_log(HISTORY + WINDOW), "2024-01-26", ReminderConfig(horizon_days=7),
                            top_n=1).set_index("method")
    # repeat pairs in the window: (1,a), (2,a), (2,c), (3,e); (4,f) is a first purchase
    assert ev.attrs["repeat_pairs"] == 4 and ev.attrs["bought_pairs"] == 5
    rem = ev.loc["reminders (all due)"]
    assert (rem["reminders"], rem["bought_in_window"]) == (3, 2)
    assert rem["precision"] == pytest.approx(2 / 3) and rem["recall"] == pytest.approx(2 / 4)
    base = ev.loc["baseline: bought >= 2x"]  # (1,a), (1,b), (2,a), (3,d), (3,e)
    assert (base["reminders"], base["bought_in_window"]) == (5, 3)
    assert base["precision"] == pytest.approx(3 / 5) and base["recall"] == pytest.approx(3 / 4)
    top = ev.loc["reminders top 1/customer"]  # (1,a) and (2,a): both bought
    assert (top["reminders"], top["precision"]) == (2, 1.0)


def test_evaluate_default_cutoff_holds_out_the_last_horizon_days():
    ev = evaluate_reminders(_log(HISTORY + WINDOW), config=ReminderConfig(horizon_days=7))
    assert ev.attrs["cutoff"] == "2024-01-25" and ev.attrs["window_end"] == "2024-02-01"


def test_evaluate_with_an_empty_window_or_a_cutoff_before_the_data():
    with pytest.raises(PatronError, match="no purchases between"):
        evaluate_reminders(_log(HISTORY), "2024-01-26", ReminderConfig(horizon_days=3))
    with pytest.raises(PatronError, match="2023-06-01"):
        evaluate_reminders(_log(HISTORY + WINDOW), "2023-06-01")


def test_reminders_beat_the_naive_baseline_on_planted_repeat_buying():
    log = generate_purchases(n_customers=150, n_items=48, n_days=180, seed=5, p_repeat=0.6)
    ev = evaluate_reminders(log.purchases, config=ReminderConfig(horizon_days=14)).set_index("method")
    assert ev.loc["reminders (all due)", "precision"] > ev.loc["baseline: bought >= 2x", "precision"]
