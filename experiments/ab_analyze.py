"""Analyse an online A/B test: the service's exposure log joined with the outcomes file.

The unit is the customer (``customer_key`` in the exposure log): a customer converts if
any of their visits converted; revenue per customer sums their attributed revenue.
Per variant: customers, exposures, conversion rate, revenue per customer. Against the
control: absolute and relative lift with 95% intervals, the two-proportion z-test for
conversion and Welch's t-test for revenue per customer, a sample-ratio-mismatch check
against the configured weights, and the sample size a minimum detectable effect needs.

**Several treatments** are each compared with the control at ``alpha / (arms - 1)``
(Bonferroni) in the verdict and the sample-size plan.

**Repeated looks.** Two rules guard against peeking, and the verdict uses them only:

1. *Always valid (sequential)*: for conversion, a mixture SPRT (Johari et al. 2017,
   normal mixture ``N(0, tau^2)``, ``tau`` = the MDE) is evaluated after every customer in
   arrival order; its always-valid p-value may be checked at any time, as often as you
   like, and a verdict is given the moment it falls below ``alpha``.
2. *Fixed horizon*: the z-test / Welch p-values are shown, but a verdict from them is
   refused until every arm has reached the planned sample size (MDE and power).

A sample-ratio mismatch (chi-square p < 0.001) invalidates the verdict. Nothing is dropped
silently: every excluded row is counted under its reason in ``exclusions``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import stats
from experiments.interleaving import InterleavingResult, analyze_credit, credit
from features.errors import PatronError

__all__ = ["Analysis", "analyze", "load_config_weights", "save_analysis", "SRM_P"]

SRM_P = 0.001  # sample-ratio-mismatch alarm threshold
MIN_SEQ = 20  # customers per arm before the sequential test starts


@dataclass
class Analysis:
    """The result of :func:`analyze` (tables as DataFrames; ``as_dict`` for JSON)."""

    experiment: str
    kind: str  # split | interleave
    control: str | None
    variants: pd.DataFrame
    comparisons: pd.DataFrame
    srm: dict
    plan: dict
    verdict: str
    verdict_detail: str
    exclusions: list[dict] = field(default_factory=list)
    torn: dict | None = None
    interleaving: InterleavingResult | None = None
    timeline: pd.DataFrame | None = None
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "experiment": self.experiment, "kind": self.kind, "control": self.control,
            "variants": _records(self.variants), "comparisons": _records(self.comparisons),
            "srm": self.srm, "plan": self.plan, "verdict": self.verdict,
            "verdict_detail": self.verdict_detail, "exclusions": self.exclusions,
            "torn": self.torn,
            "interleaving": self.interleaving.as_dict() if self.interleaving else None,
            "settings": self.settings,
        }

    def text(self) -> str:
        """A plain-text report for the terminal."""
        out = [f"experiment {self.experiment!r} ({self.kind})"]
        if self.torn:
            out.append(
                f"WARNING: exposure log: {self.torn.get('bad_lines', 1)} unreadable line(s) "
                f"skipped, the first at line {self.torn['line']} ({self.torn['bytes']} bytes)"
            )
        if not self.variants.empty:
            out.append(self.variants.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        if not self.comparisons.empty:
            cols = ["variant", "metric", "diff", "diff_low", "diff_high", "relative",
                    "relative_low", "relative_high", "p_value", "p_always_valid"]
            out.append(self.comparisons[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        if self.interleaving is not None:
            r = self.interleaving
            out.append(
                f"interleaving {r.team_a} vs {r.team_b}: {r.requests} requests, "
                f"{r.requests_with_conversion} with a conversion; wins {r.wins_a} / {r.wins_b}, "
                f"ties {r.ties}; preference {r.preference:+.3f} "
                f"[{r.preference_low:+.3f}, {r.preference_high:+.3f}], sign test p={r.p_sign:.4g}"
            )
        if self.srm:
            flag = "SAMPLE RATIO MISMATCH" if self.srm.get("flagged") else "ok"
            out.append(f"SRM check: chi2={self.srm['chi2']:.3f} p={self.srm['p_value']:.4g} -> {flag}")
        if self.plan:
            out.append(
                f"plan: baseline {self.plan.get('baseline', float('nan')):.4f}, MDE "
                f"{self.plan.get('mde_abs', float('nan')):.4f} (abs), power {self.plan.get('power')}: "
                f"need {self.plan.get('needed_per_arm')} customers per arm, smallest arm has "
                f"{self.plan.get('smallest_arm')}"
            )
        for ex in self.exclusions:
            verb = "kept" if ex.get("rows_kept") else "excluded"
            out.append(f"{verb} {ex['rows']} {ex['what']}: {ex['reason']}")
        out.append(f"VERDICT: {self.verdict} - {self.verdict_detail}")
        return "\n".join(out)


def _records(frame: pd.DataFrame | None) -> list[dict]:
    if frame is None or frame.empty:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict(orient="records")


def load_config_weights(config, experiment: str | None) -> tuple[str | None, str, dict[str, float]]:
    """``(experiment name, type, {variant: weight})`` from a serving experiment config
    (path or :class:`serving.variants.ExperimentsConfig`)."""
    from serving.variants import ExperimentsConfig, load_experiments

    cfg = config if isinstance(config, ExperimentsConfig) else load_experiments(config)
    if experiment is not None and experiment not in cfg.experiments:
        raise PatronError(
            f"experiment {experiment!r} is not in the experiment config "
            f"(it has {sorted(cfg.experiments)})"
        )
    name, spec = cfg.resolve(experiment)
    return name, spec.type, {k: float(v.weight) for k, v in spec.variants.items()}


def analyze(
    exposures: pd.DataFrame | str | os.PathLike,
    outcomes: pd.DataFrame | str | os.PathLike,
    config=None,
    experiment: str | None = None,
    control: str | None = None,
    mde: float = 0.02,
    mde_relative: bool = False,
    power: float = 0.8,
    alpha: float = 0.05,
    torn: dict | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Analysis:
    """Join, exclude (and count), aggregate per customer, test, and give a verdict."""
    from experiments.ab_run import read_outcomes

    exclusions: list[dict] = []

    def exclude(n: int, what: str, reason: str) -> None:
        if n:
            exclusions.append({"rows": int(n), "what": what, "reason": reason})

    if not isinstance(exposures, pd.DataFrame):
        from serving.exposure import read_exposures

        exposures, torn = read_exposures(exposures)
    if not isinstance(outcomes, pd.DataFrame):
        outcomes = read_outcomes(outcomes)
    need = {"request_id", "converted", "revenue"} - set(outcomes.columns)
    if need:
        raise PatronError(f"outcomes lack field(s) {sorted(need)}; write them with `patron ab run`")
    if "converted_items" not in outcomes:
        outcomes = outcomes.assign(converted_items=[[] for _ in range(len(outcomes))])
    exp = exposures.copy()
    if torn:
        exclude(int(torn.get("bad_lines", 1)), "exposure line",
                f"unreadable, the first at line {torn['line']} of {torn['path']} "
                f"({torn['bytes']} bytes, a crash mid-write): skipped, the rest read")
    if exp.empty:
        raise PatronError("the exposure log has no complete records")

    # -- experiment, kind, weights ------------------------------------------------------
    kind, weights = "split", None
    if config is not None:
        experiment, kind, weights = load_config_weights(config, experiment)
    names_in_log = exp["experiment"].value_counts()
    if experiment is None:
        if "experiment" in outcomes and outcomes["experiment"].notna().any():
            experiment = str(outcomes["experiment"].dropna().mode().iloc[0])
        elif len(names_in_log) == 1:
            experiment = str(names_in_log.index[0])
        else:
            raise PatronError(
                f"the exposure log holds several experiments {dict(names_in_log)}; name one "
                "with --experiment"
            )
    if experiment not in names_in_log.index:
        raise PatronError(
            f"experiment {experiment!r} is not in the exposure log (it has "
            f"{dict(names_in_log)}); mismatched experiment names?"
        )
    other_ep = exp["endpoint"] != "recommend"
    exclude(other_ep.sum(), "exposures", "endpoint other than recommend")
    exp = exp[~other_ep]
    other = exp["experiment"] != experiment
    exclude(other.sum(), "exposures", f"other experiments than {experiment!r}")
    exp = exp[~other]
    dup = exp["request_id"].duplicated()
    exclude(dup.sum(), "exposures", "duplicate request_id in the exposure log")
    exp = exp[~dup]
    if kind == "split" and "teams" in exp and exp["teams"].notna().any():
        kind = "interleave"

    # -- outcomes ----------------------------------------------------------------------
    out = outcomes.copy()
    if "status" in out:
        failed = out["status"].fillna(0).astype(int) != 200
        exclude(failed.sum(), "outcomes", "request failed (no exposure expected)")
        out = out[~failed]
    if "experiment" in out:
        wrong = out["experiment"].notna() & (out["experiment"] != experiment)
        exclude(wrong.sum(), "outcomes", f"outcome of another experiment than {experiment!r}")
        out = out[~wrong]
    dup = out["request_id"].duplicated()
    exclude(dup.sum(), "outcomes", "duplicate request_id in the outcomes")
    out = out[~dup]

    keep = ["request_id", "converted", "revenue", "converted_items"]
    keep += [c for c in ("variant", "visit_time") if c in out]
    joined = exp.merge(out[keep].rename(columns={"variant": "outcome_variant"}),
                       on="request_id", how="outer", indicator=True)
    exclude((joined["_merge"] == "left_only").sum(), "exposures",
            "no outcome for the request (not sent by this run)")
    exclude((joined["_merge"] == "right_only").sum(), "outcomes",
            "no exposure for the request (exposure lost, torn or in another log)")
    joined = joined[joined["_merge"] == "both"].drop(columns="_merge")
    if "outcome_variant" in joined:
        mism = joined["outcome_variant"].notna() & (joined["outcome_variant"] != joined["variant"])
        if mism.any():  # a warning, not an exclusion: the exposure log is the truth
            exclusions.append({
                "rows": int(mism.sum()), "what": "outcomes (kept)", "rows_kept": True,
                "reason": "variant in the response differs from the exposure log; the log's is used",
            })
    anon = joined["customer_key"].isna()
    exclude(anon.sum(), "exposures", "anonymous request (no customer key)")
    joined = joined[~anon]
    if joined.empty:
        raise PatronError(
            f"no exposure of experiment {experiment!r} matches an outcome (request_id); "
            "are the log and the outcomes from the same run?"
        )

    settings = dict(mde=mde, mde_relative=mde_relative, power=power, alpha=alpha, n_boot=n_boot)
    if kind == "interleave":
        return _interleave(joined, experiment, weights, exclusions, torn, settings, n_boot, alpha, seed)

    # -- variants --------------------------------------------------------------------
    seen = joined["variant"].value_counts()
    if weights is not None:
        unknown = [v for v in seen.index if v not in weights]
        if unknown:
            raise PatronError(
                f"exposure log has variant(s) {unknown} ({int(seen[unknown].sum())} exposures) "
                f"that experiment {experiment!r} does not configure ({sorted(weights)})"
            )
        arms = list(weights)
    else:
        arms = sorted(seen.index, key=lambda v: (v != "control", v))
    empty = [v for v in arms if v not in seen.index]
    if empty:
        raise PatronError(f"experiment {experiment!r}: arm(s) {empty} have no exposures")
    if len(arms) < 2:
        raise PatronError(
            f"experiment {experiment!r} has only one variant {arms}: nothing to compare"
        )
    control = control or ("control" if "control" in arms else arms[0])
    if control not in arms:
        raise PatronError(f"control {control!r} is not a variant of {experiment!r} ({arms})")

    multi = joined.groupby("customer_key")["variant"].nunique()
    multi = multi[multi > 1].index
    in_multi = joined["customer_key"].isin(multi)
    exclude(in_multi.sum(), "exposures",
            f"{len(multi)} customer(s) seen in more than one variant (assignment not sticky)")
    joined = joined[~in_multi]

    joined["revenue"] = pd.to_numeric(joined["revenue"], errors="coerce")
    has_revenue = bool(joined["revenue"].notna().any())
    time_col = "visit_time" if "visit_time" in joined and joined["visit_time"].notna().all() else None
    agg = dict(exposures=("request_id", "size"), converted=("converted", "max"),
               revenue=("revenue", "sum"), first_ts=("ts", "min"))
    if time_col:
        agg["first_visit"] = (time_col, "min")
    cust = joined.groupby(["variant", "customer_key"], sort=False).agg(**agg).reset_index()
    cust["converted"] = cust["converted"].astype(float)

    g = cust.groupby("variant")
    table = pd.DataFrame({
        "customers": g.size(),
        "exposures": g["exposures"].sum(),
        "conversions": g["converted"].sum(),
        "conversion_rate": g["converted"].mean(),
        "revenue_per_customer": g["revenue"].mean() if has_revenue else np.nan,
        "revenue_var": g["revenue"].var(ddof=1) if has_revenue else np.nan,
        "revenue_total": g["revenue"].sum() if has_revenue else np.nan,
    }).reindex(arms)
    table["weight"] = [weights[a] / sum(weights.values()) if weights else 1 / len(arms) for a in arms]
    table = table.reset_index().rename(columns={"index": "variant"})
    for v in arms:
        if table.loc[table["variant"] == v, "customers"].iloc[0] == 0:
            raise PatronError(f"experiment {experiment!r}: arm {v!r} has no customers left")

    # -- SRM ---------------------------------------------------------------------------
    chi2, p_srm = stats.srm_test(table["customers"].to_numpy(), table["weight"].to_numpy())
    srm = {
        "chi2": chi2, "p_value": p_srm, "flagged": bool(p_srm < SRM_P), "threshold": SRM_P,
        "weights": "configured" if weights else "assumed equal (no --config)",
        "observed": dict(zip(table["variant"], table["customers"].astype(int).tolist(), strict=True)),
    }

    # -- tests --------------------------------------------------------------------------
    c = table.set_index("variant").loc[control]
    baseline = float(c["conversion_rate"])
    mde_abs = mde * baseline if mde_relative else mde
    tau2 = max(mde_abs, 1e-6) ** 2
    rows = []
    for v in arms:
        if v == control:
            continue
        t = table.set_index("variant").loc[v]
        z = stats.two_proportion_test(c["conversions"], c["customers"], t["conversions"], t["customers"], alpha)
        seq_p, seq_lo, seq_hi = _sequential(cust, control, v, tau2, alpha)
        rows.append(_row(v, "conversion_rate", z, "two-proportion z", seq_p, seq_lo, seq_hi))
        if has_revenue:
            w = stats.welch_test(c["revenue_per_customer"], c["revenue_var"], c["customers"],
                                 t["revenue_per_customer"], t["revenue_var"], t["customers"], alpha)
            rows.append(_row(v, "revenue_per_customer", w, "Welch t"))
    comparisons = pd.DataFrame(rows)

    # -- plan and verdict --------------------------------------------------------------
    # several treatments: Bonferroni, each comparison at alpha / (number of treatments)
    alpha_each = alpha / max(1, len(arms) - 1)
    plan: dict = {"baseline": baseline, "mde_abs": mde_abs, "power": power, "alpha": alpha,
                  "alpha_per_comparison": alpha_each}
    share_b = float(table["weight"].iloc[1] / (table["weight"].iloc[0] + table["weight"].iloc[1]))
    try:
        n_a, n_b = stats.sample_size_proportions(baseline, mde_abs, alpha_each, power, share_b)
        plan["needed_per_arm"] = int(max(n_a, n_b))
    except ValueError as exc:
        plan["needed_per_arm"] = None
        plan["note"] = f"cannot plan a sample size: {exc}"
    plan["smallest_arm"] = int(table["customers"].min())
    plan["reached"] = bool(plan["needed_per_arm"] and plan["smallest_arm"] >= plan["needed_per_arm"])
    verdict, detail = _verdict(comparisons, srm, plan, alpha_each)
    if not has_revenue:
        detail += " (no prices in the outcomes: revenue not analysed)"
    return Analysis(
        experiment=experiment, kind="split", control=control, variants=table.drop(columns="revenue_var"),
        comparisons=comparisons, srm=srm, plan=plan, verdict=verdict, verdict_detail=detail,
        exclusions=exclusions, torn=torn, timeline=_timeline(cust, time_col), settings=settings,
    )


def _row(variant, metric, r: stats.TestResult, test, seq_p=np.nan, seq_lo=np.nan, seq_hi=np.nan) -> dict:
    return {
        "variant": variant, "metric": metric, "control_value": float(r.rate_a),
        "value": float(r.rate_b), "diff": float(r.diff), "diff_low": float(r.diff_low),
        "diff_high": float(r.diff_high), "relative": float(r.relative),
        "relative_low": float(r.relative_low), "relative_high": float(r.relative_high),
        "test": test, "p_value": float(r.p_value), "p_always_valid": float(seq_p),
        "always_valid_low": float(seq_lo), "always_valid_high": float(seq_hi),
    }


def _sequential(cust: pd.DataFrame, control: str, variant: str, tau2: float, alpha: float):
    """Always-valid p-value (min over every arrival) and the final confidence sequence."""
    two = cust[cust["variant"].isin([control, variant])].sort_values("first_ts", kind="stable")
    is_b = (two["variant"] == variant).to_numpy()
    conv = two["converted"].to_numpy(np.float64)
    n_b = np.cumsum(is_b)
    n_a = np.cumsum(~is_b)
    x_b = np.cumsum(conv * is_b)
    x_a = np.cumsum(conv * ~is_b)
    ok = (n_a >= MIN_SEQ) & (n_b >= MIN_SEQ)
    if not ok.any():
        return np.nan, np.nan, np.nan
    p, lo, hi = stats.sequential_conversion(x_a[ok], n_a[ok], x_b[ok], n_b[ok], tau2, alpha)
    return float(p[-1]), float(lo[-1]), float(hi[-1])


def _verdict(comparisons: pd.DataFrame, srm: dict, plan: dict, alpha: float) -> tuple[str, str]:
    if srm.get("flagged"):
        return "INVALID", (
            f"sample ratio mismatch (p={srm['p_value']:.2g} < {SRM_P}): assignment or logging "
            "is broken; fix it before reading any lift"
        )
    conv = comparisons[comparisons["metric"] == "conversion_rate"]
    seq = conv[conv["p_always_valid"] <= alpha]
    if len(seq):
        parts = [
            f"{r.variant} {'better' if r.diff > 0 else 'worse'} than control "
            f"(always-valid p={r.p_always_valid:.3g})"
            for r in seq.itertuples()
        ]
        return "SIGNIFICANT", "; ".join(parts) + " - sequential test, valid at any look"
    if not plan.get("reached"):
        return "KEEP RUNNING", (
            f"no sequential verdict yet and only {plan['smallest_arm']} of "
            f"{plan.get('needed_per_arm')} planned customers in the smallest arm: the "
            "fixed-horizon p-values are shown but not acted on before the planned sample size"
        )
    sig = conv[conv["p_value"] < alpha]
    if len(sig):
        parts = [f"{r.variant} {'better' if r.diff > 0 else 'worse'} (p={r.p_value:.3g})"
                 for r in sig.itertuples()]
        return "SIGNIFICANT", "; ".join(parts) + " - fixed horizon reached"
    return "NO DIFFERENCE DETECTED", (
        f"planned sample size reached; no conversion difference at alpha={alpha} "
        f"(the MDE was {plan['mde_abs']:.4g})"
    )


def _timeline(cust: pd.DataFrame, time_col: str | None) -> pd.DataFrame:
    """Cumulative conversion rate per variant over (simulated) time."""
    col = "first_visit" if time_col else "first_ts"
    frame = cust.sort_values(col, kind="stable")
    t = frame[col]
    if not time_col:
        t = pd.to_datetime(t, unit="s")
    frame = frame.assign(day=t.dt.floor("D") if time_col else t.dt.floor("s"))
    daily = frame.groupby(["variant", "day"]).agg(n=("converted", "size"), x=("converted", "sum"))
    daily = daily.reset_index()
    daily["customers"] = daily.groupby("variant")["n"].cumsum()
    daily["conversions"] = daily.groupby("variant")["x"].cumsum()
    daily["conversion_rate"] = daily["conversions"] / daily["customers"]
    return daily[["variant", "day", "customers", "conversions", "conversion_rate"]]


def _interleave(joined, experiment, weights, exclusions, torn, settings, n_boot, alpha, seed) -> Analysis:
    if "teams" not in joined or joined["teams"].isna().all():
        raise PatronError(f"experiment {experiment!r} is an interleave experiment but the "
                          "exposure log has no 'teams' field")
    no_teams = joined["teams"].isna()
    if no_teams.any():
        exclusions.append({"rows": int(no_teams.sum()), "what": "exposures",
                           "reason": "interleave experiment exposure without teams"})
    joined = joined[~no_teams].copy()
    joined["converted_items"] = [x if isinstance(x, list) else [] for x in joined["converted_items"]]
    seen = sorted({t for lst in joined["teams"] for t in lst})
    names = list(weights) if weights else seen
    unknown = [t for t in seen if t not in names]
    if unknown or len(names) != 2:
        raise PatronError(
            f"interleave experiment {experiment!r}: teams {seen} do not match the two "
            f"configured variants {names}"
        )
    per = credit(joined, (names[0], names[1]))
    res = analyze_credit(per, (names[0], names[1]), n_boot=n_boot, alpha=alpha, seed=seed)
    if res.requests_with_conversion == 0:
        verdict, detail = "NO DATA", "no request had a conversion: no preference can be credited"
    elif res.p_sign < alpha:
        verdict, detail = "SIGNIFICANT", f"{res.winner} preferred (sign test p={res.p_sign:.3g})"
    else:
        verdict, detail = "NO DIFFERENCE DETECTED", f"sign test p={res.p_sign:.3g}"
    variants = pd.DataFrame({
        "variant": names, "requests": [res.requests] * 2,
        "wins": [res.wins_a, res.wins_b], "ties": [res.ties] * 2,
        "credited_conversions": [int(per["credit_a"].sum()), int(per["credit_b"].sum())],
    })
    return Analysis(
        experiment=experiment, kind="interleave", control=names[0], variants=variants,
        comparisons=pd.DataFrame(), srm={}, plan={}, verdict=verdict, verdict_detail=detail,
        exclusions=exclusions, torn=torn, interleaving=res, settings=settings,
    )


def save_analysis(analysis: Analysis, path: str | os.PathLike) -> Path:
    """Write the analysis as JSON."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(analysis.as_dict(), indent=2, default=_json_default))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    return str(o)

