"""Pure statistics for offline comparison and A/B analysis (no I/O, no Patron imports).

Every test works on numpy arrays and broadcasts, so the same function analyses one
experiment or 10,000 simulated ones (``experiments.simulate`` validates them that way).

Conventions: arm ``a`` is the control, ``b`` the treatment; a difference is ``b - a``;
relative lift is ``b / a - 1``; intervals are two-sided at level ``1 - alpha``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

__all__ = [
    "Interval", "bootstrap_weights", "bootstrap_means", "bootstrap_ci", "paired_bootstrap",
    "paired_ttest", "two_proportion_test", "welch_test", "srm_test", "sample_size_proportions",
    "sample_size_means", "power_two_proportions", "msprt", "always_valid_pvalues", "always_valid_ci", "sequential_conversion", "sign_test",
    "binomial_acceptance",
]

# bootstrap works in blocks of at most this many resample cells (rows x customers)
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return asdict(self)


def _z(alpha: float) -> float:
    return float(st.norm.ppf(1.0 - alpha / 2.0))


# -- bootstrap -------------------------------------------------------------------------
def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot x n`` resample counts: row ``r`` counts how often each unit is drawn.

    Built from an index matrix (``n_boot x n`` draws with replacement) by one offset
    ``bincount``, so ``weights @ values / n`` are the bootstrap means.
    """
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_means(
    values: np.ndarray, n_boot: int = 1000, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Bootstrap distribution of column means: ``(n_boot,)`` for 1-d ``values``, else
    ``(n_boot, m)`` for ``n x m`` (every column resampled with the same units, so paired
    metrics stay paired)."""
    v = np.asarray(values, dtype=np.float64)
    one_d = v.ndim == 1
    v = v.reshape(len(v), -1)
    n = v.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    out = np.empty((n_boot, v.shape[1]))
    for lo in range(0, n_boot, block):
        hi = min(n_boot, lo + block)
        out[lo:hi] = bootstrap_weights(n, hi - lo, rng) @ v / n
    return out[:, 0] if one_d else out


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> list[Interval]:
    """Percentile bootstrap interval of the mean of each column of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v2 = v.reshape(len(v), -1)
    boots = bootstrap_means(v2, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    est = v2.mean(axis=0)
    return [Interval(float(e), float(a), float(b)) for e, a, b in zip(est, lo, hi, strict=True)]


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of ``b`` against ``a`` over the same units."""

    mean_a: float
    mean_b: float
    diff: Interval  # b - a
    relative: Interval  # b / a - 1 (ratio of bootstrap means)
    p_bootstrap: float
    p_ttest: float
    n: int


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> PairedResult:
    """Paired bootstrap over units of ``mean(b) - mean(a)`` and ``mean(b)/mean(a) - 1``.

    The p-value is two-sided, from the bootstrap distribution of the difference centred
    on zero (null of equal means): ``P(|D* - d| >= |d|)``, with the +1 correction.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and the same length ({a.shape} vs {b.shape})")
    boots = bootstrap_means(np.column_stack([a, b]), n_boot, seed)
    ma, mb = float(a.mean()), float(b.mean())
    d = mb - ma
    dist = boots[:, 1] - boots[:, 0]
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = boots[:, 1] / boots[:, 0] - 1.0
        rel_est = mb / ma - 1.0 if ma != 0 else np.nan
    rel = rel[np.isfinite(rel)]
    rlo, rhi = np.quantile(rel, [alpha / 2, 1 - alpha / 2]) if rel.size else (np.nan, np.nan)
    p_boot = (1.0 + np.sum(np.abs(dist - d) >= abs(d))) / (n_boot + 1.0)
    return PairedResult(
        mean_a=ma,
        mean_b=mb,
        diff=Interval(d, float(lo), float(hi)),
        relative=Interval(float(rel_est), float(rlo), float(rhi)),
        p_bootstrap=float(min(1.0, p_boot)),
        p_ttest=float(paired_ttest(a, b)[1]),
        n=len(a),
    )


def paired_ttest(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired t statistic and two-sided p-value of ``b - a`` (p = 1 if no variation)."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = len(d)
    if n < 2:
        return 0.0, 1.0
    sd = d.std(ddof=1)
    if sd == 0:
        return (0.0, 1.0) if d.mean() == 0 else (float(np.sign(d.mean()) * np.inf), 0.0)
    t = d.mean() / (sd / np.sqrt(n))
    return float(t), float(2 * st.t.sf(abs(t), n - 1))


# -- fixed-horizon tests (vectorised over arrays of experiments) ------------------------
@dataclass(frozen=True)
class TestResult:
    """Arrays (or scalars) describing ``b`` against ``a``."""

    rate_a: np.ndarray
    rate_b: np.ndarray
    diff: np.ndarray
    diff_low: np.ndarray
    diff_high: np.ndarray
    relative: np.ndarray
    relative_low: np.ndarray
    relative_high: np.ndarray
    stat: np.ndarray
    p_value: np.ndarray


def two_proportion_test(x_a, n_a, x_b, n_b, alpha: float = 0.05) -> TestResult:
    """Two-proportion z-test (pooled standard error), Wald interval of the difference
    (unpooled), delta-method interval of the relative lift (log of the ratio)."""
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=np.float64) for v in (x_a, n_a, x_b, n_b))
    z = _z(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = x_a / n_a, x_b / n_b
        diff = pb - pa
        pool = (x_a + x_b) / (n_a + n_b)
        se0 = np.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
        stat = np.where(se0 > 0, diff / se0, 0.0)
        se = np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
        rel = pb / pa - 1.0
        se_log = np.sqrt((1 - pa) / x_a + (1 - pb) / x_b)
        log_ratio = np.log(pb / pa)
        rel_low, rel_high = np.exp(log_ratio - z * se_log) - 1, np.exp(log_ratio + z * se_log) - 1
    p = 2 * st.norm.sf(np.abs(stat))
    return TestResult(
        pa, pb, diff, diff - z * se, diff + z * se, rel, rel_low, rel_high, stat, p
    )


def welch_test(mean_a, var_a, n_a, mean_b, var_b, n_b, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test from summary statistics (sample variances, ddof=1),
    with a delta-method interval for the relative lift ``mean_b / mean_a - 1``."""
    ma, va, na, mb, vb, nb = (
        np.asarray(v, dtype=np.float64) for v in (mean_a, var_a, n_a, mean_b, var_b, n_b)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        sa, sb = va / na, vb / nb
        se = np.sqrt(sa + sb)
        diff = mb - ma
        stat = np.where(se > 0, diff / se, 0.0)
        df = np.where(se > 0, (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1)), 1.0)
        df = np.where(np.isfinite(df) & (df > 0), df, 1.0)
        t = st.t.ppf(1 - alpha / 2, df)
        rel = mb / ma - 1.0
        se_rel = np.sqrt(sb / ma**2 + mb**2 * sa / ma**4)
        rel_low, rel_high = rel - _z(alpha) * se_rel, rel + _z(alpha) * se_rel
    p = 2 * st.t.sf(np.abs(stat), df)
    return TestResult(ma, mb, diff, diff - t * se, diff + t * se, rel, rel_low, rel_high, stat, p)


def srm_test(observed, weights) -> tuple:
    """Sample-ratio-mismatch chi-square test of arm counts against configured weights.

    ``observed`` holds one count per arm along its last axis (leading axes: many
    experiments). Returns ``(chi2, p)`` (floats for one experiment, arrays otherwise);
    by convention a mismatch is flagged at ``p < 0.001``.
    """
    obs = np.asarray(observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if obs.shape[-1:] != w.shape or w.size < 2:
        raise ValueError("need at least two arms, with one weight per arm")
    if np.any(w <= 0):
        raise ValueError("variant weights must be positive")
    total = obs.sum(axis=-1, keepdims=True)
    expected = total * w / w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(expected > 0, (obs - expected) ** 2 / expected, 0.0).sum(axis=-1)
    p = st.chi2.sf(chi2, w.size - 1)
    if obs.ndim == 1:
        return float(chi2), float(p)
    return chi2, p


# -- planning ------------------------------------------------------------------------
def sample_size_proportions(
    p_a: float, mde: float, alpha: float = 0.05, power: float = 0.8, share_b: float = 0.5
) -> tuple[int, int]:
    """Customers needed per arm ``(n_a, n_b)`` to detect an absolute lift ``mde`` on a
    baseline rate ``p_a`` with a two-sided z-test; ``share_b`` is the treatment's share."""
    if not 0 < p_a < 1 or not 0 < p_a + mde < 1 or mde == 0:
        raise ValueError(f"need 0 < p_a < 1, 0 < p_a + mde < 1 and mde != 0 (p_a={p_a}, mde={mde})")
    p_b = p_a + mde
    var = p_a * (1 - p_a) / (1 - share_b) + p_b * (1 - p_b) / share_b
    total = (_z(alpha) + st.norm.ppf(power)) ** 2 * var / mde**2
    return int(np.ceil(total * (1 - share_b))), int(np.ceil(total * share_b))


def sample_size_means(
    sd: float, mde: float, alpha: float = 0.05, power: float = 0.8, share_b: float = 0.5
) -> tuple[int, int]:
    """Per-arm sample sizes to detect an absolute difference ``mde`` in a mean whose
    per-unit standard deviation is ``sd`` (normal approximation)."""
    if sd <= 0 or mde == 0:
        raise ValueError(f"need sd > 0 and mde != 0 (sd={sd}, mde={mde})")
    var = sd**2 / (1 - share_b) + sd**2 / share_b
    total = (_z(alpha) + st.norm.ppf(power)) ** 2 * var / mde**2
    return int(np.ceil(total * (1 - share_b))), int(np.ceil(total * share_b))


def power_two_proportions(p_a, mde, n_a, n_b, alpha: float = 0.05) -> np.ndarray:
    """Power of the two-sided two-proportion z-test (normal approximation)."""
    p_b = np.asarray(p_a) + mde
    se = np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    z = _z(alpha)
    return st.norm.sf(z - np.abs(mde) / se) + st.norm.cdf(-z - np.abs(mde) / se)


# -- sequential (always valid) ------------------------------------------------------------
def msprt(diff, var, tau2: float) -> np.ndarray:
    """Mixture SPRT likelihood ratio for ``H0: theta = 0`` (Johari et al. 2017).

    ``diff`` is the estimate of ``theta`` (e.g. ``p_b - p_a``), ``var`` its variance
    (``s_a^2/n_a + s_b^2/n_b``), the mixing distribution ``N(0, tau2)``::

        Lambda = sqrt(V / (V + tau2)) * exp(tau2 * diff^2 / (2 V (V + tau2)))
    """
    d = np.asarray(diff, dtype=np.float64)
    v = np.maximum(np.asarray(var, dtype=np.float64), 1e-300)
    log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))
    return np.exp(np.minimum(log_lr, 700.0))


def always_valid_pvalues(diff, var, tau2: float) -> np.ndarray:
    """Always-valid p-values along the last axis (the looks): ``p_t = min_{s<=t} 1/Lambda_s``.

    Stopping the first time ``p_t <= alpha`` keeps the false-positive rate <= alpha
    however often one looks.
    """
    p = np.minimum(1.0, 1.0 / msprt(diff, var, tau2))
    return np.minimum.accumulate(p, axis=-1)


def always_valid_ci(diff, var, tau2: float, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The confidence sequence matching :func:`always_valid_pvalues` (valid at every look)."""
    d = np.asarray(diff, dtype=np.float64)
    v = np.maximum(np.asarray(var, dtype=np.float64), 1e-300)
    half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * np.log(alpha)))
    return d - half, d + half


def sequential_conversion(x_a, n_a, x_b, n_b, tau2: float, alpha: float = 0.05):
    """Always-valid test of two conversion rates at a sequence of looks (last axis).

    ``x``/``n`` are cumulative conversions/customers per arm at each look. The variance
    is the plug-in ``p(1-p)/n`` per arm, floored at one event's worth (``1/n^2``) so an
    early look with no conversion yet cannot claim certainty. Returns ``(p, low, high)``:
    the always-valid p-value after each look and the confidence sequence's running
    intersection (both valid however many looks are taken).
    """
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=np.float64) for v in (x_a, n_a, x_b, n_b))
    pa, pb = x_a / n_a, x_b / n_b
    var = np.maximum(pa * (1 - pa), 1 / n_a) / n_a + np.maximum(pb * (1 - pb), 1 / n_b) / n_b
    p = always_valid_pvalues(pb - pa, var, tau2)
    lo, hi = always_valid_ci(pb - pa, var, tau2, alpha)
    return p, np.maximum.accumulate(lo, axis=-1), np.minimum.accumulate(hi, axis=-1)


# -- interleaving / validation helpers --------------------------------------------------
def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) of wins against losses; ties dropped."""
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(st.binomtest(int(wins), n, 0.5).pvalue)


def binomial_acceptance(n: int, p: float, level: float = 0.99) -> tuple[float, float]:
    """Central interval of the rate ``k/n`` for ``k ~ Binomial(n, p)`` at ``level``:
    where an observed false-positive rate must fall if the test is calibrated."""
    lo = st.binom.ppf((1 - level) / 2, n, p)
    hi = st.binom.isf((1 - level) / 2, n, p)
    return float(lo / n), float(hi / n)
