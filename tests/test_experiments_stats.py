"""Statistics of the A/B harness on simulated data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from experiments import stats
from experiments.simulate import validate


def test_bootstrap_weights_are_resample_counts():
    w = stats.bootstrap_weights(7, 50, np.random.default_rng(0))
    assert w.shape == (50, 7)
    assert np.all(w.sum(axis=1) == 7)
    assert np.all(w >= 0)


def test_bootstrap_ci_coverage_on_a_known_distribution():
    # 400 independent samples of an exponential(mean 1): the 95% interval of the mean
    # should cover 1.0 about 95% of the time (percentile bootstrap of a skewed mean
    # undercovers slightly at n=100).
    rng = np.random.default_rng(1)
    data = rng.exponential(1.0, size=(100, 400))  # 100 customers x 400 data sets
    cis = stats.bootstrap_ci(data, n_boot=1000, seed=2)
    covered = np.mean([c.low <= 1.0 <= c.high for c in cis])
    assert 0.90 <= covered <= 0.98, covered
    # intervals shrink with more data
    big = stats.bootstrap_ci(rng.exponential(1.0, 2000), n_boot=500)[0]
    assert big.high - big.low < np.mean([c.high - c.low for c in cis])


def test_paired_bootstrap_detects_a_planted_difference_and_not_a_null():
    rng = np.random.default_rng(3)
    a = rng.random(500) < 0.3
    b = a | (rng.random(500) < 0.1)  # b = a plus extra hits: strictly better
    res = stats.paired_bootstrap(a, b, n_boot=2000)
    assert res.diff.low > 0 and res.p_bootstrap < 0.01 and res.p_ttest < 0.01
    assert res.relative.estimate == pytest.approx(b.mean() / a.mean() - 1)
    null = stats.paired_bootstrap(a, a.copy())
    assert null.diff.estimate == 0 and null.p_ttest == 1.0


def test_two_proportion_test_matches_scipy_chi2():
    x_a, n_a, x_b, n_b = 120, 1000, 150, 1000
    res = stats.two_proportion_test(x_a, n_a, x_b, n_b)
    table = np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]])
    chi2, p, _, _ = st.chi2_contingency(table, correction=False)
    assert float(res.p_value) == pytest.approx(p, rel=1e-9)
    assert float(res.diff) == pytest.approx(0.03)
    assert res.diff_low < 0.03 < res.diff_high
    assert float(res.relative) == pytest.approx(0.25)


def test_welch_matches_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 300), rng.normal(0.3, 2, 200)
    res = stats.welch_test(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b))
    ref = st.ttest_ind(b, a, equal_var=False)
    assert float(res.stat) == pytest.approx(ref.statistic)
    assert float(res.p_value) == pytest.approx(ref.pvalue)


def test_srm_flags_a_real_mismatch_only():
    assert stats.srm_test([5000, 5000], [1, 1])[1] > 0.5
    assert stats.srm_test([5200, 4800], [1, 1])[1] < 0.001
    # weighted 90/10 split that ran as configured
    assert stats.srm_test([9010, 990], [0.9, 0.1])[1] > 0.01
    with pytest.raises(ValueError):
        stats.srm_test([10, 10], [1, 0])


def test_sample_size_gives_planned_power():
    n_a, n_b = stats.sample_size_proportions(0.1, 0.02, power=0.8)
    assert 3700 < n_a < 4000 and n_a == n_b
    assert float(stats.power_two_proportions(0.1, 0.02, n_a, n_b)) == pytest.approx(0.8, abs=0.01)


def test_always_valid_pvalues_are_monotone_and_reject_a_big_effect():
    n = np.arange(100, 5001, 100)
    p = stats.always_valid_pvalues(np.full(len(n), 0.05), 0.2 / n, tau2=0.02**2)
    assert np.all(np.diff(p) <= 0) and p[-1] < 0.001


def test_sign_test():
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(30, 10) < 0.01
    assert stats.sign_test(20, 20) == pytest.approx(1.0)


def test_validation_a_a_rate_power_sequential_and_srm_all_pass():
    rep = validate(runs=500, n_per_arm=1000, seed=5)
    assert rep.passed, rep.text()
    names = {c.name: c for c in rep.checks}
    aa = names["A/A conversion z-test false positives"]
    assert aa.low < 0.05 < aa.high
    seq = [c for c in rep.checks if "mSPRT" in c.name][0]
    assert seq.observed <= 0.05
