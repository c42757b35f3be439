"""The one contract every registered model meets (after implicit's RecommenderBaseTestMixin).

Parametrised over ``training.models.registry.MODELS``: a new model is covered by adding
its registry line. Features a model does not have are skipped with the reason, never
passed silently.

The data is a block matrix with a known right answer: customers of group A bought only
group-A items (half of them), customers of group B only group-B items, so every
personalised model must recommend a customer the unbought items of their own block.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features import columns as C
from features.artifact import ArtifactError, load_artifact
from features.errors import PatronError
from features.idmap import IdMap
from features.interactions import InteractionMatrix
from features.scoring import score
from training.models.base import ModelConfig, Recommender, TrainingOptions
from training.models.registry import MODELS, get_model, load_model

N_PER_GROUP, ITEMS_PER_GROUP, BOUGHT = 24, 12, 6
K = 3
PERSONALISED_KINDS = ("factors", "item_item", "blend")

# settings that learn the tiny rank-2 block matrix quickly (more factors than blocks overfit
# 6 purchases per customer); a model not listed runs its defaults
FAST: dict[str, dict] = {
    "als": {"factors": 2, "iterations": 10, "regularization": 0.1, "alpha": 5.0},
    "blend": {"factors": 2, "iterations": 10, "regularization": 0.1, "alpha": 5.0},
    "bpr": {"factors": 8, "iterations": 150, "learning_rate": 0.05},
    "spark_als": {"factors": 2, "iterations": 5, "regularization": 0.1, "alpha": 5.0},
}


def block_matrix(seed: int = 0) -> InteractionMatrix:
    """2 groups x 24 customers, 2 blocks x 12 items; each customer bought 6 of their block."""
    rng = np.random.default_rng(seed)
    n_cust, n_items = 2 * N_PER_GROUP, 2 * ITEMS_PER_GROUP
    rows, cols = [], []
    for u in range(n_cust):
        block = u // N_PER_GROUP
        picks = rng.choice(ITEMS_PER_GROUP, size=BOUGHT, replace=False) + block * ITEMS_PER_GROUP
        rows.append(np.full(BOUGHT, u))
        cols.append(picks)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    vals = np.log1p(rng.integers(1, 4, size=len(rows))).astype(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n_cust, n_items))
    customers = IdMap(np.arange(n_cust, dtype=np.int64) * 7 + 5000)  # ids are not indices
    items = IdMap(np.array([f"sku-{'AB'[i // ITEMS_PER_GROUP]}{i:02d}" for i in range(n_items)]))
    counts = m.copy()
    counts.data = np.expm1(counts.data).round()
    return InteractionMatrix(m, customers, items, weighting={"weighting": "log1p"}, counts=counts)


DATA = block_matrix()


def block_purchases(data: InteractionMatrix = DATA) -> pd.DataFrame:
    """The purchase lines behind ``data`` (one per nonzero, spread over 60 days), for
    models that set ``needs_purchases``."""
    coo = data.matrix.tocoo()
    days = np.arange(coo.nnz) % 60
    return pd.DataFrame({
        C.CUSTOMER_ID: data.customers.id_of(coo.row),
        C.ITEM_ID: data.items.id_of(coo.col),
        C.TIMESTAMP: pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"),
    })


def group_of_customer(cid) -> int:
    return int(DATA.customers.index_of([cid])[0] // N_PER_GROUP)


def group_of_item(iid) -> int:
    return 0 if str(iid).startswith("sku-A") else 1


def bought(cid) -> set:
    r = DATA.customers.index_of([cid])[0]
    return set(DATA.items.id_of(DATA.matrix[r].indices))


def make(name: str) -> Recommender:
    cls = MODELS[name]
    return cls(FAST.get(name, {}), TrainingOptions(seed=7, num_threads=1))


def fit(model: Recommender, data: InteractionMatrix = DATA, callback=None) -> Recommender:
    """``model.fit``, passing the purchase log to models that declare ``needs_purchases``."""
    if getattr(model, "needs_purchases", False):
        return model.fit(data, callback, purchases=block_purchases(data))
    return model.fit(data, callback)


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request) -> Recommender:
    model = make(request.param)
    # an optional engine (spark_als: pyspark + Java) says what it lacks here
    missing = getattr(model, "missing_dependency", lambda: None)()
    if missing:
        pytest.skip(f"{request.param}: {missing}")
    return fit(model)


def needs_personalised(model: Recommender) -> None:
    if model.kind not in PERSONALISED_KINDS:
        pytest.skip(f"{model.name} ({model.kind}) is not personalised: no block answer to check")


CUSTOMERS = DATA.customers.ids[[0, 5, N_PER_GROUP - 1, N_PER_GROUP, N_PER_GROUP + 9, -1]]


def check_frame(df: pd.DataFrame, k: int = K) -> None:
    assert list(df.columns) == [C.CUSTOMER_ID, C.ITEM_ID, C.RANK, C.SCORE]
    assert set(df[C.ITEM_ID]) <= set(DATA.items.ids)
    for _, g in df.groupby(C.CUSTOMER_ID):
        assert len(g) <= k
        assert list(g[C.RANK]) == list(range(1, len(g) + 1))
        assert (np.diff(g[C.SCORE].to_numpy()) <= 1e-6).all(), "scores are not best-first"


# -- recommendations -------------------------------------------------------------------
def test_recommends_own_block_unbought(fitted):
    needs_personalised(fitted)
    df = fitted.recommend(CUSTOMERS, k=K, filter_already_bought=True)
    check_frame(df)
    assert df[C.CUSTOMER_ID].nunique() == len(CUSTOMERS)
    for cid, g in df.groupby(C.CUSTOMER_ID):
        assert len(g) == K
        assert not set(g[C.ITEM_ID]) & bought(cid), f"{fitted.name}: recommended bought items"
        assert {group_of_item(i) for i in g[C.ITEM_ID]} == {group_of_customer(cid)}, (
            f"{fitted.name}: customer {cid} got items of the other block: {list(g[C.ITEM_ID])}"
        )


def test_without_filter_stays_in_block(fitted):
    needs_personalised(fitted)
    df = fitted.recommend(CUSTOMERS, k=K, filter_already_bought=False)
    check_frame(df)
    for cid, g in df.groupby(C.CUSTOMER_ID):
        assert {group_of_item(i) for i in g[C.ITEM_ID]} == {group_of_customer(cid)}


def test_filter_already_bought(fitted):
    k = DATA.n_items
    df = fitted.recommend(CUSTOMERS, k=k, filter_already_bought=True)
    check_frame(df, k)
    for cid, g in df.groupby(C.CUSTOMER_ID):
        assert not set(g[C.ITEM_ID]) & bought(cid)
        assert len(g) == DATA.n_items - BOUGHT
    full = fitted.recommend(CUSTOMERS, k=k, filter_already_bought=False)
    assert len(full) == len(CUSTOMERS) * k


def test_items_allowed_and_excluded(fitted):
    allowed = list(DATA.items.ids[::3])
    df = fitted.recommend(CUSTOMERS, k=K, filter_already_bought=False, items_allowed=allowed)
    check_frame(df)
    assert set(df[C.ITEM_ID]) <= set(allowed) and len(df) > 0
    excluded = list(DATA.items.ids[1::2])
    df = fitted.recommend(CUSTOMERS, k=DATA.n_items, filter_already_bought=False,
                          items_excluded=excluded)
    assert not set(df[C.ITEM_ID]) & set(excluded)
    assert len(df) == len(CUSTOMERS) * (DATA.n_items - len(excluded))
    df = fitted.recommend(CUSTOMERS, k=K, items_allowed=allowed, items_excluded=allowed[:2])
    assert set(df[C.ITEM_ID]) <= set(allowed[2:])


def test_batch_equals_one_by_one(fitted):
    batch = fitted.recommend(CUSTOMERS, k=5)
    single = pd.concat([fitted.recommend([c], k=5) for c in CUSTOMERS], ignore_index=True)
    pd.testing.assert_frame_equal(batch.reset_index(drop=True), single, check_exact=False, rtol=1e-5)
    # indices path (evaluation) agrees with the id path, in any batch size
    rows = DATA.customers.index_of(CUSTOMERS)
    i1, s1 = fitted.recommend_indices(rows, k=5)
    i2, s2 = fitted.recommend_indices(rows, k=5, batch_size=2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    assert list(DATA.items.id_of(i1[0])) == list(batch[batch[C.CUSTOMER_ID] == CUSTOMERS[0]][C.ITEM_ID])


def test_similar_items_same_block_first(fitted):
    if not fitted.supports_similar_items:
        pytest.skip(f"{fitted.name} declares no similar_items")
    sources = DATA.items.ids[[0, 4, ITEMS_PER_GROUP, ITEMS_PER_GROUP + 7]]
    df = fitted.similar_items(sources, k=K)
    assert list(df.columns) == ["source_item_id", C.ITEM_ID, C.RANK, C.SCORE]
    for src, g in df.groupby("source_item_id"):
        assert len(g) == K
        assert src not in set(g[C.ITEM_ID]), "an item is not its own neighbour"
        assert {group_of_item(i) for i in g[C.ITEM_ID]} == {group_of_item(src)}, (
            f"{fitted.name}: {src} -> {list(g[C.ITEM_ID])}"
        )


# -- persistence and config --------------------------------------------------------------
def test_save_load_identical(fitted, tmp_path):
    path = tmp_path / "model"
    fitted.save(path)
    before = fitted.recommend(CUSTOMERS, k=5)
    for loaded in (type(fitted).load(path), load_model(path)):
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        pd.testing.assert_frame_equal(loaded.recommend(CUSTOMERS, k=5), before)
        if fitted.supports_similar_items:
            pd.testing.assert_frame_equal(
                loaded.similar_items(DATA.items.ids[:3], k=4), fitted.similar_items(DATA.items.ids[:3], k=4)
            )
    assert load_artifact(path).model_name == fitted.name


def test_config_round_trip(fitted):
    cfg = fitted.config
    assert isinstance(cfg, ModelConfig)
    params = cfg.to_params()
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in params.values()), params
    assert type(cfg).from_params(params) == cfg
    # MLflow hands params back as strings
    assert type(cfg).from_params({k: str(v) for k, v in params.items()}) == cfg
    assert type(fitted)(params).config == cfg
    with pytest.raises(ValueError, match="not_a_field"):
        type(cfg).from_params({**params, "not_a_field": 1})
    for name, field in type(cfg).model_fields.items():
        assert field.description, f"{fitted.name}: config field {name!r} has no description"
    # the artifact carries the config as params
    assert {k: fitted.fitted.params[k] for k in params} == cfg.model_dump()


def test_registry_names_match():
    for name, cls in MODELS.items():
        assert cls.name == name
        assert issubclass(cls.Config, ModelConfig)
        assert get_model(name) is cls
    with pytest.raises(PatronError, match="known models"):
        get_model("no-such-model")


# -- bad input ---------------------------------------------------------------------------
def test_unknown_ids_rejected(fitted):
    with pytest.raises(KeyError, match="424242"):
        fitted.recommend([CUSTOMERS[0], 424242], k=3)
    if fitted.supports_similar_items:
        with pytest.raises(KeyError, match="sku-ZZ"):
            fitted.similar_items(["sku-ZZ"], k=3)


def test_other_format_version_rejected(fitted, tmp_path):
    path = tmp_path / "model"
    fitted.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format_version"):
        type(fitted).load(path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_empty_matrix_rejected(name):
    empty = InteractionMatrix(sp.csr_matrix((3, 4), dtype=np.float32), IdMap(np.arange(3)),
                              IdMap(np.arange(4)))
    with pytest.raises(PatronError, match="empty"):
        fit(make(name), empty)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unfitted_model_refuses(name):
    from training.models.base import NotFittedError

    with pytest.raises(NotFittedError):
        make(name).recommend(CUSTOMERS[:1])


# -- training hooks ----------------------------------------------------------------------
class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", sorted(MODELS))
def test_epoch_callback(name):
    model = make(name)
    if not model.supports_epoch_callback:
        pytest.skip(f"{name} has no per-epoch callback")
    epochs: list[int] = []
    scored: list[np.ndarray] = []
    rows = np.arange(DATA.n_customers)

    def cb(epoch, arrays):
        epochs.append(epoch)
        assert arrays, "callback got no arrays"
        for a in arrays.values():
            assert a.shape[0] in (DATA.n_customers, DATA.n_items)
        # a tuner scores mid-fit arrays through the same artifact/scoring path
        scored.append(score(model.make_artifact(DATA, arrays), rows))

    fit(model, callback=cb)
    n = getattr(model.config, "iterations", len(epochs))
    assert epochs == list(range(n))
    np.testing.assert_allclose(scored[-1], score(model.fitted, rows), rtol=1e-6)

    def stop(epoch, arrays):
        if epoch == 1:
            raise _Stop("pruned")

    with pytest.raises(_Stop):
        fit(make(name), callback=stop)
