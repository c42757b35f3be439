"""Patron's implicit-backed models (ALS, BPR, item-kNN) agree with implicit itself.

Scores from the artifact (``features.scoring``, what serving uses) must equal what
implicit's own ``recommend`` computes, fold-in included; fits are reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from features.idmap import IdMap
from features.interactions import InteractionMatrix
from features.scoring import fold_in, score
from training.models.als import ALSRecommender
from training.models.base import TrainingOptions
from training.models.bpr import BPRRecommender
from training.models.knn import ItemKNNRecommender
from training.threads import blas_threads

OPTS = TrainingOptions(seed=3, num_threads=1)


def random_matrix(n_cust: int = 60, n_items: int = 40, density: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = sp.random(n_cust, n_items, density=density, format="csr", random_state=rng,
                  data_rvs=lambda n: np.log1p(rng.integers(1, 5, n)), dtype=np.float32)
    m.eliminate_zeros()
    return InteractionMatrix(m, IdMap(np.arange(n_cust) + 100), IdMap(np.arange(n_items) + 9000))


DATA = random_matrix()


def implicit_scores(model, rows, user_items, recalculate_user=False) -> np.ndarray:
    """Dense scores from implicit's own recommend (all items, nothing filtered)."""
    ids, vals = model.recommend(rows, user_items, N=user_items.shape[1],
                                filter_already_liked_items=False, recalculate_user=recalculate_user)
    out = np.zeros((len(rows), user_items.shape[1]), dtype=np.float32)
    np.put_along_axis(out, ids, vals, axis=1)
    return out


def raw_als(model: ALSRecommender):
    from implicit.cpu.als import AlternatingLeastSquares

    cfg = model.config
    with blas_threads(1):
        raw = AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization,
                                      alpha=cfg.alpha, iterations=cfg.iterations, use_cg=cfg.use_cg,
                                      num_threads=1, random_state=OPTS.seed)
    return raw


# -- ALS ----------------------------------------------------------------------------------
def test_als_equals_raw_implicit_fit_and_scores():
    model = ALSRecommender({"factors": 8, "iterations": 6, "alpha": 4.0}, OPTS).fit(DATA)
    raw = raw_als(model)
    with blas_threads(1):
        raw.fit(DATA.matrix, show_progress=False)
    art = model.fitted
    np.testing.assert_array_equal(art.arrays["user_factors"], raw.user_factors)
    np.testing.assert_array_equal(art.arrays["item_factors"], raw.item_factors)
    rows = np.arange(10)
    np.testing.assert_allclose(score(art, rows), implicit_scores(raw, rows, DATA.matrix[rows]),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 7.5])
def test_als_fold_in_matches_implicit_recalculate_user(alpha):
    model = ALSRecommender({"factors": 6, "iterations": 5, "alpha": alpha, "regularization": 0.2},
                           OPTS).fit(DATA)
    raw = raw_als(model)
    raw.user_factors = model.fitted.arrays["user_factors"].copy()
    raw.item_factors = model.fitted.arrays["item_factors"].copy()
    # a "cart": new histories for customers the model has not seen
    carts = random_matrix(8, DATA.n_items, density=0.2, seed=5).matrix
    ours = fold_in(model.fitted, carts)
    theirs = raw.recalculate_user(np.arange(8), carts)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    # scoring unknown customers (-1) with a history == implicit's recalculate_user recommend
    got = score(model.fitted, np.full(8, -1), carts)
    want = implicit_scores(raw, np.arange(8), carts, recalculate_user=True)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_als_known_customer_with_cart_is_refolded():
    model = ALSRecommender({"factors": 4, "iterations": 4}, OPTS).fit(DATA)
    art = model.fitted
    hist = art.history[[0]].tolil()
    hist[0, np.flatnonzero(art.history[0].toarray().ravel() == 0)[0]] = 1.0
    cart = hist.tocsr()
    assert not np.allclose(score(art, np.array([0]), cart), score(art, np.array([0])))
    np.testing.assert_allclose(score(art, np.array([0]), cart), score(art, np.array([-1]), cart))


# -- BPR ----------------------------------------------------------------------------------
def test_bpr_scores_equal_implicit_and_bias_column():
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BPRRecommender({"factors": 5, "iterations": 20}, OPTS).fit(DATA)
    art = model.fitted
    U, Y = art.arrays["user_factors"], art.arrays["item_factors"]
    assert U.shape[1] == Y.shape[1] == 6  # factors + implicit's bias column
    np.testing.assert_array_equal(U[:, -1], 1.0)
    raw = BayesianPersonalizedRanking(factors=5, num_threads=1)
    raw.user_factors, raw.item_factors = U.copy(), Y.copy()
    rows = np.arange(12)
    np.testing.assert_allclose(score(art, rows), implicit_scores(raw, rows, DATA.matrix[rows]),
                               rtol=1e-5, atol=1e-6)
    # a folded-in customer keeps the constant-1 user column, so item biases still count
    folded = fold_in(art, DATA.matrix[:3])
    np.testing.assert_array_equal(folded[:, -1], 1.0)
    assert art.params["fold_in"] == "mean"


# -- determinism --------------------------------------------------------------------------
@pytest.mark.parametrize("cls,cfg", [(ALSRecommender, {"factors": 8, "iterations": 5}),
                                     (BPRRecommender, {"factors": 8, "iterations": 20})])
def test_fixed_seed_one_thread_is_reproducible(cls, cfg):
    a = cls(cfg, OPTS).fit(DATA).fitted.arrays
    b = cls(cfg, OPTS).fit(DATA).fitted.arrays
    for name in ("user_factors", "item_factors"):
        np.testing.assert_array_equal(a[name], b[name])
    c = cls(cfg, TrainingOptions(seed=OPTS.seed + 1, num_threads=1)).fit(DATA).fitted.arrays
    assert not np.array_equal(a["item_factors"], c["item_factors"])


def test_callback_sees_current_factors():
    seen = []
    model = ALSRecommender({"factors": 4, "iterations": 3}, OPTS)
    model.fit(DATA, callback=lambda epoch, arrays: seen.append(arrays["item_factors"].copy()))
    assert len(seen) == 3
    assert not np.array_equal(seen[0], seen[1])
    np.testing.assert_array_equal(seen[-1], model.fitted.arrays["item_factors"])


def test_blas_threads_limits_inside_only():
    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert before, "numpy should load a BLAS"
    with blas_threads(1):
        assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == [1] * len(before)
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before


# -- item kNN -----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Method expects CSR input")
@pytest.mark.parametrize("similarity", ["cosine", "bm25", "tfidf"])
def test_knn_scores_equal_implicit_recommend(similarity):
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    cfg = {"similarity": similarity, "neighbours": 10, "bm25_k1": 1.5, "bm25_b": 0.6}
    model = ItemKNNRecommender(cfg, OPTS).fit(DATA)
    raw = {"cosine": CosineRecommender(K=10, num_threads=1),
           "bm25": BM25Recommender(K=10, K1=1.5, B=0.6, num_threads=1),
           "tfidf": TFIDFRecommender(K=10, num_threads=1)}[similarity]
    raw.fit(DATA.matrix, show_progress=False)
    S = model.fitted.arrays["similarity"]
    assert S.shape == (DATA.n_items, DATA.n_items) and sp.issparse(S)
    assert np.diff(S.indptr).max() <= 10
    rows = np.arange(15)
    ids, vals = raw.recommend(rows, DATA.matrix[rows], N=5, filter_already_liked_items=True)
    got_i, got_v = model.recommend_indices(rows, k=5, filter_already_bought=True)
    np.testing.assert_allclose(got_v, vals, rtol=1e-5, atol=1e-6)
    # equal scores may tie in any order: compare the item sets per score
    mine = score(model.fitted, rows)
    np.testing.assert_allclose(np.take_along_axis(mine, ids, axis=1), vals, rtol=1e-5, atol=1e-6)


def test_als_fold_in_many_rows_in_chunks_with_empty_rows():
    """128 factors make the batched fold-in split 720+ nonzeros into several chunks."""
    model = ALSRecommender({"factors": 128, "iterations": 2, "alpha": 2.0}, OPTS).fit(DATA)
    raw = raw_als(model)
    raw.user_factors = model.fitted.arrays["user_factors"].copy()
    raw.item_factors = model.fitted.arrays["item_factors"].copy()
    carts = random_matrix(80, DATA.n_items, density=0.3, seed=9).matrix.tolil()
    carts[[3, 40, 79]] = 0  # customers with nothing to fold in
    carts = carts.tocsr()
    carts.eliminate_zeros()
    assert carts.nnz > 512
    ours = fold_in(model.fitted, carts)
    np.testing.assert_array_equal(ours[[3, 40, 79]], 0.0)
    np.testing.assert_allclose(ours, raw.recalculate_user(np.arange(80), carts), rtol=2e-3, atol=2e-4)
