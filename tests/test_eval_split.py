"""Splits: no leakage, last basket per customer, validation inside train, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from features import columns as C
from features.errors import PatronError
from training.split import (
    Split,
    SplitError,
    split_global_time,
    split_last_basket,
    split_validation,
)


def log(rows) -> pd.DataFrame:
    """rows: (customer, item, 'YYYY-MM-DD HH:MM', order) tuples."""
    df = pd.DataFrame(rows, columns=[C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.ORDER_ID])
    df[C.TIMESTAMP] = pd.to_datetime(df[C.TIMESTAMP])
    return df


PURCHASES = log([
    (1, "a", "2024-01-01 10:00", 100),
    (1, "b", "2024-01-01 10:00", 100),
    (1, "c", "2024-01-20 09:00", 101),
    (1, "a", "2024-01-31 18:00", 102),  # customer 1's last basket: 102
    (1, "d", "2024-01-31 18:00", 102),
    (2, "a", "2024-01-05 08:00", 200),
    (2, "c", "2024-01-25 12:00", 201),  # customer 2's last basket: 201
    (3, "b", "2024-01-10 11:00", 300),  # customer 3: one basket, stays in train
    (4, "e", "2024-01-30 10:00", 400),  # customer 4: only in the test period (cold)
])


def test_global_time_holdout_days_is_calendar_aligned_and_leak_free():
    s = split_global_time(PURCHASES, holdout_days=7)
    assert isinstance(s, Split)
    # last day 2024-01-31 -> test covers 2024-01-25 .. 2024-01-31
    assert s.description["cutoff"] == "2024-01-25 00:00:00"
    assert s.train[C.TIMESTAMP].max() < s.test[C.TIMESTAMP].min()
    assert len(s.train) + len(s.test) == len(PURCHASES)
    assert sorted(s.test[C.ORDER_ID].unique()) == [102, 201, 400]
    assert s.description["test_customers"] == 3
    assert s.description["test_customers_in_train"] == 2


def test_global_time_cutoff():
    s = split_global_time(PURCHASES, cutoff="2024-01-20")
    assert (s.train[C.TIMESTAMP] < pd.Timestamp("2024-01-20")).all()
    assert (s.test[C.TIMESTAMP] >= pd.Timestamp("2024-01-20")).all()
    assert len(s.test) == 5


@pytest.mark.parametrize("cutoff", ["2023-12-01", "2024-01-01 10:00", "2024-03-01"])
def test_cutoff_outside_the_data_is_a_patron_error(cutoff):
    with pytest.raises(PatronError, match="outside the data"):
        split_global_time(PURCHASES, cutoff=cutoff)


def test_split_errors():
    with pytest.raises(SplitError, match="exactly one"):
        split_global_time(PURCHASES)
    with pytest.raises(SplitError, match="covers all the data"):
        split_global_time(PURCHASES, holdout_days=400)
    with pytest.raises(SplitError, match="not a date"):
        split_global_time(PURCHASES, cutoff="yesterday-ish")
    # the only test customer (4) never bought before
    with pytest.raises(SplitError, match="too few customers"):
        split_global_time(PURCHASES[PURCHASES[C.CUSTOMER_ID] != 1], cutoff="2024-01-26")
    with pytest.raises(SplitError, match="too few customers"):
        split_global_time(PURCHASES, holdout_days=7, min_customers=3)
    with pytest.raises(SplitError, match="missing column"):
        split_global_time(PURCHASES.drop(columns=[C.TIMESTAMP]), holdout_days=7)


def test_last_basket_per_customer_by_order_id():
    s = split_last_basket(PURCHASES)
    assert sorted(s.test[C.ORDER_ID].unique()) == [102, 201]
    assert set(s.train[C.CUSTOMER_ID]) == {1, 2, 3, 4}
    # no (customer, order) in both sides; every line kept exactly once
    both = set(zip(s.train[C.CUSTOMER_ID], s.train[C.ORDER_ID], strict=True)) & set(
        zip(s.test[C.CUSTOMER_ID], s.test[C.ORDER_ID], strict=True)
    )
    assert not both and len(s.train) + len(s.test) == len(PURCHASES)
    # each test basket is its customer's latest
    last = PURCHASES.groupby(C.CUSTOMER_ID)[C.TIMESTAMP].max()
    assert (s.test[C.TIMESTAMP].to_numpy() == last.loc[s.test[C.CUSTOMER_ID]].to_numpy()).all()
    assert s.description["basket"] == C.ORDER_ID
    assert s.description["customers_with_one_basket"] == 2


def test_last_basket_without_order_id_uses_the_last_day():
    df = PURCHASES.drop(columns=[C.ORDER_ID])
    df.loc[len(df)] = [2, "x", pd.Timestamp("2024-01-25 20:00")]  # same day as basket 201
    s = split_last_basket(df)
    assert s.description["basket"] == "day"
    got = s.test.sort_values([C.CUSTOMER_ID, C.ITEM_ID])[[C.CUSTOMER_ID, C.ITEM_ID]]
    assert got.to_numpy().tolist() == [[1, "a"], [1, "d"], [2, "c"], [2, "x"]]


def test_last_basket_needs_a_customer_with_two_baskets():
    with pytest.raises(SplitError, match="too few customers"):
        split_last_basket(PURCHASES[PURCHASES[C.CUSTOMER_ID].isin([3, 4])])


def test_validation_is_carved_from_the_end_of_train_only():
    outer = split_global_time(PURCHASES, holdout_days=7)
    val = split_validation(outer.train, holdout_days=10)
    assert val.description["kind"] == "validation"
    assert val.test[C.TIMESTAMP].max() < outer.test[C.TIMESTAMP].min()
    assert val.train[C.TIMESTAMP].max() < val.test[C.TIMESTAMP].min()
    merged = pd.concat([val.train, val.test]).sort_values([C.TIMESTAMP, C.ITEM_ID])
    expect = outer.train.sort_values([C.TIMESTAMP, C.ITEM_ID])
    assert merged.reset_index(drop=True).equals(expect.reset_index(drop=True))


def test_validation_period_with_no_known_customer_is_an_error():
    train = PURCHASES[PURCHASES[C.TIMESTAMP] < "2024-01-15"]  # last: customer 3 alone
    with pytest.raises(SplitError, match="validation"):
        split_validation(train, holdout_days=1)
