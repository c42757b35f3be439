"""Simulated experiments that check the analysis is trustworthy (``patron ab validate``).

Each check draws many experiments at once (arrays of shape ``runs x ...``) and runs them
through the same functions :mod:`experiments.ab_analyze` uses (:mod:`experiments.stats`):

* A/A, fixed horizon: the false-positive rate of the conversion z-test and of the revenue
  Welch test at ``alpha`` must fall inside the binomial acceptance interval around ``alpha``;
* planted effect: an effect of exactly the minimum detectable size, at the sample size
  :func:`~experiments.stats.sample_size_proportions` plans, is detected at about the
  planned power;
* A/A with repeated looks: naive z-tests at every look inflate the false-positive rate;
  the always-valid mSPRT p-value stays at or below ``alpha``;
* sample-ratio mismatch: the chi-square check rarely fires on a correct split and
  catches a 50/50 split that really ran 52/48.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from experiments import stats

__all__ = ["ValidationReport", "validate", "simulate_customers"]


@dataclass
class Check:
    """One validation check: an observed rate against the interval it must fall in."""

    name: str
    observed: float
    low: float
    high: float
    runs: int
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.low <= self.observed <= self.high


@dataclass
class ValidationReport:
    checks: list[Check] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "settings": self.settings,
            "checks": [{**asdict(c), "passed": c.passed} for c in self.checks],
        }

    def text(self) -> str:
        lines = [f"{'check':<44} {'observed':>9} {'allowed':>17}  ok"]
        for c in self.checks:
            lines.append(
                f"{c.name:<44} {c.observed:>9.4f} [{c.low:.4f}, {c.high:.4f}]  "
                f"{'PASS' if c.passed else 'FAIL'}"
                + (f"  ({c.detail})" if c.detail else "")
            )
        level = self.settings.get("level", 0.99)
        lines.append(
            f"allowed = the central {level:.0%} binomial interval around the rate a calibrated "
            f"test has, so even a correct analysis fails a given check {1 - level:.0%} of the "
            "time: rerun with another --seed before suspecting the statistics"
        )
        lines.append("all checks passed" if self.passed else "SOME CHECKS FAILED")
        return "\n".join(lines)


def simulate_customers(
    rng: np.random.Generator, runs: int, n: int, rate: float, revenue_mu: float = 3.0,
    revenue_sigma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``runs x n`` customers: converted (bool) and revenue (lognormal basket if converted)."""
    conv = rng.random((runs, n)) < rate
    rev = np.where(conv, rng.lognormal(revenue_mu, revenue_sigma, (runs, n)), 0.0)
    return conv, rev


def _summaries(conv: np.ndarray, rev: np.ndarray) -> tuple[np.ndarray, ...]:
    n = conv.shape[1]
    return conv.sum(axis=1), np.full(conv.shape[0], n), rev.mean(axis=1), rev.var(axis=1, ddof=1)


def validate(
    runs: int = 500,
    n_per_arm: int = 2000,
    rate: float = 0.1,
    mde: float = 0.02,
    power: float = 0.8,
    alpha: float = 0.05,
    looks: int = 20,
    level: float = 0.99,
    seed: int = 0,
) -> ValidationReport:
    """Run every check; each passes if its observed rate is inside its interval
    (the ``level`` central binomial interval around the rate it should have)."""
    rng = np.random.default_rng(seed)
    rep = ValidationReport(settings=dict(
        runs=runs, n_per_arm=n_per_arm, rate=rate, mde=mde, power=power, alpha=alpha,
        looks=looks, level=level, seed=seed,
    ))
    lo, hi = stats.binomial_acceptance(runs, alpha, level)

    # 1. A/A fixed horizon, conversion and revenue per customer
    ca, ra = simulate_customers(rng, runs, n_per_arm, rate)
    cb, rb = simulate_customers(rng, runs, n_per_arm, rate)
    xa, na, ma, va = _summaries(ca, ra)
    xb, nb, mb, vb = _summaries(cb, rb)
    conv = stats.two_proportion_test(xa, na, xb, nb, alpha)
    rev = stats.welch_test(ma, va, na, mb, vb, nb, alpha)
    rep.checks.append(Check("A/A conversion z-test false positives", float(np.mean(conv.p_value < alpha)), lo, hi, runs))
    rep.checks.append(Check("A/A revenue Welch t false positives", float(np.mean(rev.p_value < alpha)), lo, hi, runs))
    cover = np.mean((conv.diff_low <= 0) & (conv.diff_high >= 0))
    clo, chi = stats.binomial_acceptance(runs, 1 - alpha, level)
    rep.checks.append(Check("A/A conversion interval covers 0", float(cover), clo, chi, runs))

    # 2. planted effect of size mde at the planned sample size
    n_a, n_b = stats.sample_size_proportions(rate, mde, alpha, power)
    xa = rng.binomial(n_a, rate, runs)
    xb = rng.binomial(n_b, rate + mde, runs)
    hit = stats.two_proportion_test(xa, n_a, xb, n_b, alpha)
    detected = (hit.p_value < alpha) & (hit.diff > 0)
    plo, phi = stats.binomial_acceptance(runs, power, level)
    rep.checks.append(Check(
        f"planted +{mde:g} detected (planned power {power:g})", float(np.mean(detected)), plo, phi,
        runs, f"n per arm {n_a}",
    ))

    # 3. repeated looks: naive peeking vs always-valid mSPRT, at `looks` looks and at a
    #    look after every 10 customers per arm (what ab_analyze does: every arrival)
    for n_looks in (looks, max(1, n_per_arm // 10)):
        step = max(1, n_per_arm // n_looks)
        xa = rng.binomial(step, rate, (runs, n_looks)).cumsum(axis=1)
        xb = rng.binomial(step, rate, (runs, n_looks)).cumsum(axis=1)
        n = step * np.arange(1, n_looks + 1)
        peek = stats.two_proportion_test(xa, n, xb, n, alpha)
        naive = float(np.mean((peek.p_value < alpha).any(axis=1)))
        avp, _, _ = stats.sequential_conversion(xa, n, xb, n, tau2=mde**2, alpha=alpha)
        rep.checks.append(Check(
            f"A/A mSPRT false positives over {n_looks} looks", float(np.mean(avp[:, -1] <= alpha)),
            0.0, hi, runs, f"naive z-test peeking: {naive:.3f}",
        ))
    # the sequential test's power on the planted effect at the planned sample size
    step = max(1, n_a // looks)
    xa = rng.binomial(step, rate, (runs, looks)).cumsum(axis=1)
    xb = rng.binomial(step, rate + mde, (runs, looks)).cumsum(axis=1)
    n = step * np.arange(1, looks + 1)
    avp, _, _ = stats.sequential_conversion(xa, n, xb, n, tau2=mde**2, alpha=alpha)
    rep.checks.append(Check(
        f"planted +{mde:g} detected by mSPRT (info)", float(np.mean(avp[:, -1] <= alpha)),
        0.0, 1.0, runs, "sequential tests trade power for valid peeking",
    ))

    # 4. sample-ratio mismatch: correct split vs a real 52/48 split of 20,000 customers
    total = 20_000
    ok = rng.binomial(total, 0.5, runs)
    bad = rng.binomial(total, 0.52, runs)
    p_ok = stats.srm_test(np.column_stack([ok, total - ok]), [1, 1])[1]
    p_bad = stats.srm_test(np.column_stack([bad, total - bad]), [1, 1])[1]
    slo, shi = stats.binomial_acceptance(runs, 0.001, level)
    rep.checks.append(Check("SRM false alarms on a correct split", float(np.mean(p_ok < 0.001)), slo, shi, runs))
    rep.checks.append(Check(
        "SRM catches a 52/48 split", float(np.mean(p_bad < 0.001)), 0.9, 1.0, runs,
        f"{total} customers per run",
    ))
    return rep
