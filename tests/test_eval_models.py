"""Baselines rank as they should; evaluation modes mean what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features import columns as C
from features.errors import PatronError
from features.idmap import IdMap
from features.interactions import InteractionMatrix
from training.evaluate import build_test_set, evaluate, evaluate_models, fit_model, format_table
from training.models.baselines import PopularityModel, RecentPopularityModel, RepeatBuyModel
from training.models.registry import MODELS

# customers 10, 11, 12 x items a b c d; values = purchase counts (binary-free on purpose)
COUNTS = np.array(
    [
        [3, 0, 1, 0],  # 10: a three times, c once
        [0, 1, 1, 0],  # 11
        [1, 0, 1, 0],  # 12
    ],
    dtype=np.float32,
)
TRAIN = InteractionMatrix(
    sp.csr_matrix(COUNTS), IdMap(np.array([10, 11, 12])), IdMap(np.array(["a", "b", "c", "d"]))
)
# popularity (distinct customers): c=3, a=2, b=1, d=0
TRAIN_LOG = pd.DataFrame(
    {
        C.CUSTOMER_ID: [10, 10, 10, 10, 11, 11, 12, 12],
        C.ITEM_ID: list("aaacbcac"),
        C.TIMESTAMP: pd.to_datetime(
            ["2024-01-01"] * 3 + ["2024-02-01", "2024-01-31", "2024-01-31", "2024-01-01", "2024-01-02"]
        ),
    }
)
TEST_LOG = pd.DataFrame(
    {
        C.CUSTOMER_ID: [10, 10, 10, 11, 12, 13],
        C.ITEM_ID: ["a", "d", "d", "a", "c", "a"],  # 13 is cold; (10, d) twice counts once
        C.TIMESTAMP: pd.to_datetime(["2024-03-01"] * 6),
    }
)


def recs(model, customers=(10, 11, 12), k=4, filt=False):
    df = model.recommend(list(customers), k=k, filter_already_bought=filt)
    return {c: g.sort_values(C.RANK)[C.ITEM_ID].tolist() for c, g in df.groupby(C.CUSTOMER_ID)}


def test_baselines_are_registered():
    assert MODELS["popularity"] is PopularityModel
    assert MODELS["recent_popularity"] is RecentPopularityModel
    assert MODELS["repeat_buy"] is RepeatBuyModel


def test_popularity_ranks_by_distinct_customers():
    m = PopularityModel().fit(TRAIN)
    assert recs(m)[10] == ["c", "a", "b", "d"]  # a has more purchases but fewer customers
    assert recs(m, filt=True)[11] == ["a", "d"]


def test_recent_popularity_counts_the_last_days_of_train():
    m = fit_model(RecentPopularityModel({"days": 2}), TRAIN, TRAIN_LOG)
    # window 2024-01-31 .. 2024-02-01: c by 10 and 11, b by 11, a by nobody
    assert recs(m)[12] == ["c", "b", "a", "d"]
    assert m.fitted.params["reference_day"] == "2024-02-01"
    wide = fit_model(RecentPopularityModel({"days": 60}), TRAIN, TRAIN_LOG)
    assert recs(wide)[12] == ["c", "a", "b", "d"]  # whole period: plain popularity


def test_recent_popularity_without_timestamps_is_a_clear_error():
    with pytest.raises(PatronError, match="needs purchase timestamps"):
        RecentPopularityModel().fit(TRAIN)
    decayed = InteractionMatrix(TRAIN.matrix, TRAIN.customers, TRAIN.items,
                                weighting={"half_life_days": 7})
    m = RecentPopularityModel().fit(decayed)
    assert m.fitted.params["recent_source"] == "decayed_matrix"


def test_repeat_buy_ranks_own_items_by_count_then_popularity():
    m = RepeatBuyModel().fit(TRAIN)
    r = recs(m)
    assert r[10] == ["a", "c", "b", "d"]  # own a (3) > own c (1) > popular b > d
    assert r[11][:2] == ["c", "b"]  # equal own counts: popularity breaks the tie
    assert recs(m, filt=True)[11] == ["a", "d"]  # filtered: falls back to popularity


def test_baselines_save_and_load(tmp_path):
    m = fit_model(RecentPopularityModel({"days": 2}), TRAIN, TRAIN_LOG)
    m.save(tmp_path / "m")
    back = RecentPopularityModel.load(tmp_path / "m")
    assert back.config.days == 2 and recs(back) == recs(m)


def test_test_set_modes_and_cold_counts():
    ts = build_test_set(TRAIN, TEST_LOG)
    assert ts.rows.tolist() == [0, 1, 2]
    assert ts.stats["cold_customers"] == 1 and ts.stats["known_customers"] == 3
    dense = {m: ts.relevant[m].toarray().astype(int).tolist() for m in ts.relevant}
    # repeat: every distinct test item; new: minus items bought in train
    assert dense["repeat"] == [[1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]
    assert dense["new"] == [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_test_items_unknown_to_training_are_counted_and_dropped():
    test = pd.concat([TEST_LOG, TEST_LOG.iloc[:1].assign(**{C.ITEM_ID: "zzz"})])
    ts = build_test_set(TRAIN, test)
    assert ts.stats["cold_items"] == 1 and ts.stats["cold_item_rows"] == 1
    assert ts.relevant["repeat"].shape == (3, 4)


def test_mode_semantics_repeat_buy_vs_popularity():
    models = {"pop": PopularityModel().fit(TRAIN), "rb": RepeatBuyModel().fit(TRAIN)}
    res = evaluate_models(models, TRAIN, TEST_LOG, k=(1, 2), keep_recommendations=True)
    # new mode: customers 10 (wants d) and 11 (wants a); 12 has nothing new -> excluded
    assert res.n_customers == {"new": 2, "repeat": 3}
    # repeat mode, k=1: repeat_buy recommends 10->a (hit), 11->c (miss), 12->c (hit)
    assert res.value("rb", "repeat", "precision", 1) == pytest.approx(2 / 3)
    # popularity recommends c to everyone: only 12 hits
    assert res.value("pop", "repeat", "precision", 1) == pytest.approx(1 / 3)
    # new mode filters bought items: 10 gets b, d -> d hits at rank 2; 11 gets a -> hit
    assert res.value("pop", "new", "mrr", 2) == pytest.approx((1 / 2 + 1) / 2)
    assert res.value("pop", "new", "recall", 2) == pytest.approx(1.0)
    r = res.recommendations
    new = r[(r["model"] == "pop") & (r["mode"] == "new")]
    bought = set(zip(TRAIN_LOG[C.CUSTOMER_ID], TRAIN_LOG[C.ITEM_ID], strict=True))
    assert not bought & set(zip(new[C.CUSTOMER_ID], new[C.ITEM_ID], strict=True))
    assert set(new[C.CUSTOMER_ID]) == {10, 11}
    text = format_table(res)
    assert "mode new" in text and "mode repeat" in text and "1 cold" in text


def test_evaluate_checks_the_model_matches_the_matrix():
    other = InteractionMatrix(sp.csr_matrix(COUNTS[:2]), IdMap(np.array([10, 11])), TRAIN.items)
    m = PopularityModel().fit(other)
    with pytest.raises(PatronError, match="was fit on"):
        evaluate(m, TRAIN, TEST_LOG)
    with pytest.raises(PatronError, match="unknown evaluation mode"):
        evaluate(PopularityModel().fit(TRAIN), TRAIN, TEST_LOG, modes=("old",))


def test_to_dict_is_json_ready():
    import json

    res = evaluate(RepeatBuyModel().fit(TRAIN), TRAIN, TEST_LOG, k=(1, 3))
    d = json.loads(json.dumps(res.to_dict()))
    assert {r["k"] for r in d["metrics"]} == {1, 3}
    assert d["n_customers"] == {"new": 2, "repeat": 3}


def test_a_mode_with_no_relevant_customer_reports_nan_not_a_crash():
    only_rebuys = TEST_LOG[TEST_LOG[C.ITEM_ID] == "c"]  # 12 re-buys c: nothing new for anyone
    res = evaluate(PopularityModel().fit(TRAIN), TRAIN, only_rebuys, k=(2,))
    assert res.n_customers == {"new": 0, "repeat": 1}
    assert np.isnan(res.value("popularity", "new", "ndcg", 2))
    assert res.to_dict()["metrics"][0]["value"] is None
    assert res.value("popularity", "repeat", "hit_rate", 2) == pytest.approx(1.0)
