"""EASE's closed form and the repeat + ALS blend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from features.errors import PatronError
from features.idmap import IdMap
from features.interactions import InteractionMatrix
from features.scoring import score
from training.models.als import ALSRecommender
from training.models.base import TrainingOptions
from training.models.blend import BlendRecommender
from training.models.ease import EASERecommender, TooManyItemsError

OPTS = TrainingOptions(seed=11, num_threads=1)


def random_matrix(n_cust: int = 80, n_items: int = 30, density: float = 0.2, seed: int = 1):
    rng = np.random.default_rng(seed)
    m = sp.random(n_cust, n_items, density=density, format="csr", random_state=rng,
                  data_rvs=lambda n: np.log1p(rng.integers(1, 6, n)), dtype=np.float32)
    m.eliminate_zeros()
    return InteractionMatrix(m, IdMap(np.array([f"c{i}" for i in range(n_cust)])),
                             IdMap(np.arange(n_items) * 3 + 1))


DATA = random_matrix()


# -- EASE ---------------------------------------------------------------------------------
@pytest.mark.parametrize("l2", [1.0, 50.0])
def test_ease_matches_the_closed_form(l2):
    model = EASERecommender({"l2": l2}, OPTS).fit(DATA)
    B = model.fitted.arrays["similarity"]
    assert B.dtype == np.float32 and B.shape == (DATA.n_items, DATA.n_items)
    X = DATA.matrix.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + l2 * np.eye(DATA.n_items))
    want = np.eye(DATA.n_items) - P / np.diag(P)[None, :]
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(B, want, rtol=2e-3, atol=2e-5)
    assert np.all(np.diag(B) == 0.0)
    np.testing.assert_allclose(score(model.fitted, np.arange(5)), X[:5] @ want, rtol=2e-3, atol=1e-4)


def test_ease_solution_minimises_its_objective():
    """B solves min ||X - XB||^2 + l2 ||B||^2 with diag(B)=0: the gradient is zero off-diagonal."""
    l2 = 10.0
    B = EASERecommender({"l2": l2}, OPTS).fit(DATA).fitted.arrays["similarity"].astype(np.float64)
    X = DATA.matrix.toarray().astype(np.float64)
    G = X.T @ X
    grad = G @ B - G + l2 * B
    np.fill_diagonal(grad, 0.0)
    assert np.abs(grad).max() < 1e-3 * np.abs(G).max()


def test_ease_refuses_too_many_items():
    with pytest.raises(TooManyItemsError, match=r"30 items exceed max_items=20") as exc:
        EASERecommender({"max_items": 20}, OPTS).fit(DATA)
    assert isinstance(exc.value, PatronError)
    assert "min_item_customers" in str(exc.value)
    assert EASERecommender.Config().max_items == 30_000


# -- blend --------------------------------------------------------------------------------
ALS_CFG = {"factors": 6, "iterations": 5, "alpha": 3.0}


def test_blend_weight_zero_is_als_ranking():
    als = ALSRecommender(ALS_CFG, OPTS).fit(DATA)
    blend = BlendRecommender({**ALS_CFG, "blend_weight": 0.0}, OPTS).fit(DATA)
    art = blend.fitted
    assert art.kind == "blend" and art.params["cf_kind"] == "factors"
    np.testing.assert_array_equal(art.arrays["item_factors"], als.fitted.arrays["item_factors"])
    rows = np.arange(20)
    np.testing.assert_array_equal(blend.recommend_indices(rows, 8)[0], als.recommend_indices(rows, 8)[0])


def test_blend_weight_one_ranks_own_history_first():
    blend = BlendRecommender({**ALS_CFG, "blend_weight": 1.0}, OPTS).fit(DATA)
    rows = np.arange(20)
    idx, _ = blend.recommend_indices(rows, k=DATA.n_items, filter_already_bought=False)
    for r, ranked in zip(rows, idx, strict=True):
        own = DATA.matrix[r]
        n_own = own.nnz
        assert set(ranked[:n_own]) == set(own.indices)
        # most-bought first (ties broken by popularity)
        vals = own.toarray().ravel()[ranked[:n_own]]
        assert np.all(np.diff(vals) <= 1e-6)


def test_blend_mixes_both_components():
    rows = np.arange(DATA.n_customers)
    half = BlendRecommender({**ALS_CFG, "blend_weight": 0.5}, OPTS).fit(DATA)
    pure_als = BlendRecommender({**ALS_CFG, "blend_weight": 0.0}, OPTS).fit(DATA)
    pure_own = BlendRecommender({**ALS_CFG, "blend_weight": 1.0}, OPTS).fit(DATA)
    top = {m: m.recommend_indices(rows, 5, filter_already_bought=False)[0] for m in (half, pure_als, pure_own)}
    assert not np.array_equal(top[half], top[pure_als])
    assert not np.array_equal(top[half], top[pure_own])
    # the blend's own repeat candidates rank higher than in pure ALS
    def own_share(idx):
        return np.mean([np.isin(i, DATA.matrix[r].indices).mean() for r, i in zip(rows, idx, strict=True)])
    assert own_share(top[pure_als]) < own_share(top[half]) <= own_share(top[pure_own])


def test_blend_callback_carries_item_scores():
    seen = []
    BlendRecommender(ALS_CFG, OPTS).fit(DATA, callback=lambda e, a: seen.append(sorted(a)))
    assert seen == [["item_factors", "item_scores", "user_factors"]] * ALS_CFG["iterations"]
