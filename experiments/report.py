"""HTML reports with PNG plots, for A/B analyses and offline comparisons, and MLflow logging.

:func:`write_report` renders an :class:`~experiments.ab_analyze.Analysis` into a folder:
``index.html`` (tables, verdict, exclusions), ``conversion_over_time.png`` (cumulative
conversion rate per variant), ``lift.png`` (relative lift with its 95% interval) and
``analysis.json``. :func:`log_report_to_mlflow` logs such a folder as the artifacts of an
MLflow run (with the headline numbers as metrics).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_report", "write_compare_report", "log_report_to_mlflow", "plot_intervals"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return "<p><em>none</em></p>"
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, classes="t")


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table.t{border-collapse:collapse;margin:.5em 0}table.t td,table.t th{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:right}.verdict{font-size:1.3em;padding:.5em;
background:#eef}.alarm{background:#fdd;padding:.5em;font-weight:bold}img{max-width:100%}"""


def plot_intervals(
    labels: list[str], est, low, high, path: Path, title: str, xlabel: str, zero: float = 0.0
) -> Path:
    """A forest plot: one row per label, the estimate and its interval."""
    plt = _plt()
    est, low, high = (np.asarray(v, dtype=float) for v in (est, low, high))
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    with np.errstate(invalid="ignore"):
        err = np.vstack([est - low, high - est])
    err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
    ax.errorbar(est, y, xerr=err, fmt="o", capsize=4, color="tab:blue")
    ax.axvline(zero, color="grey", ls="--", lw=1)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_timeline(timeline: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, grp in timeline.groupby("variant", sort=False):
        ax.step(grp["day"], grp["conversion_rate"], where="post", label=f"{variant}")
    ax.set_ylabel("cumulative conversion rate")
    ax.set_xlabel("visit time")
    ax.set_title("Conversion over time per variant")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(analysis, out_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``index.html`` + PNG plots + ``analysis.json`` for an A/B analysis."""
    from experiments.ab_analyze import save_analysis

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"A/B test {analysis.experiment}"
    save_analysis(analysis, out / "analysis.json")
    imgs = []
    if analysis.timeline is not None and not analysis.timeline.empty:
        _plot_timeline(analysis.timeline, out / "conversion_over_time.png")
        imgs.append("conversion_over_time.png")
    comp = analysis.comparisons
    if comp is not None and not comp.empty:
        labels = [f"{r.variant}: {r.metric}" for r in comp.itertuples()]
        plot_intervals(labels, comp["relative"] * 100, comp["relative_low"] * 100,
                       comp["relative_high"] * 100, out / "lift.png",
                       f"Lift vs {analysis.control} (95% interval)", "relative lift (%)")
        imgs.append("lift.png")
    il = analysis.interleaving
    if il is not None and il.requests_with_conversion:
        plot_intervals([f"{il.team_a} vs {il.team_b}"], [il.preference], [il.preference_low],
                       [il.preference_high], out / "lift.png",
                       "Interleaving preference (95% interval)",
                       f"preference (+: {il.team_a} wins more, -: {il.team_b} wins more)")
        imgs.append("lift.png")
    body = [f"<h1>{html.escape(title)}</h1>"]
    if analysis.srm.get("flagged"):
        body.append(f"<p class='alarm'>SAMPLE RATIO MISMATCH: p={analysis.srm['p_value']:.2g}. "
                    "The split does not follow the configured weights; do not trust the lift.</p>")
    if analysis.torn:
        body.append(f"<p class='alarm'>Exposure log: {analysis.torn.get('bad_lines', 1)} unreadable "
                    f"line(s) skipped, the first at line {analysis.torn['line']}.</p>")
    body.append(f"<p class='verdict'><b>{html.escape(analysis.verdict)}</b>: "
                f"{html.escape(analysis.verdict_detail)}</p>")
    body.append("<h2>Variants</h2>" + _table(analysis.variants))
    if comp is not None and not comp.empty:
        body.append(f"<h2>Against the control ({html.escape(str(analysis.control))})</h2>"
                    + _table(comp))
    if il is not None:
        body.append("<h2>Interleaving credit</h2>" + _table(pd.DataFrame([il.as_dict()])))
    if analysis.srm:
        body.append("<h2>Sample ratio</h2>" + _table(pd.DataFrame([{
            k: v for k, v in analysis.srm.items() if k != "observed"}])))
    if analysis.plan:
        body.append("<h2>Plan</h2>" + _table(pd.DataFrame([analysis.plan])))
    body.append("<h2>Exclusions</h2>" + _table(pd.DataFrame(analysis.exclusions)))
    body += [f"<h2>{i.split('.')[0].replace('_', ' ')}</h2><img src='{i}'>" for i in dict.fromkeys(imgs)]
    body.append("<p><small>Repeated looks: the verdict uses the always-valid mSPRT p-value, or "
                "the fixed-horizon test once the planned sample size is reached.</small></p>")
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                    f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    return page


def write_compare_report(result, out_dir: str | os.PathLike, title: str = "Offline comparison") -> Path:
    """``index.html`` + ``metrics.png`` + ``differences.png`` for an offline comparison."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m, d = result.metrics, result.differences
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Metrics (95% bootstrap intervals)</h2>", _table(m)]
    body += [f"<h2>Paired differences against {html.escape(result.reference)}</h2>", _table(d)]
    for mode, grp in m.groupby("mode", sort=False):
        g = grp[grp["metric"] == result.primary]
        name = f"metrics_{mode}.png"
        plot_intervals(list(g["model"]), g["value"], g["low"], g["high"], out / name,
                       f"{result.primary}@{result.k} ({mode})", result.primary, zero=np.nan)
        body.append(f"<img src='{name}'>")
    if not d.empty:
        g = d[d["metric"] == result.primary]
        labels = [f"{r.model} ({r.mode})" for r in g.itertuples()]
        plot_intervals(labels, g["diff"], g["diff_low"], g["diff_high"], out / "differences.png",
                       f"{result.primary}@{result.k} minus {result.reference}", "difference")
        body.append("<img src='differences.png'>")
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                    f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    return page


def _artifact_location(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database (``mlartifacts/``), not into
    ``./mlruns`` of whatever directory the command runs in; servers choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def log_report_to_mlflow(
    report_dir: str | os.PathLike,
    analysis=None,
    tracking_uri: str | None = None,
    experiment_name: str = "patron-ab",
    run_name: str | None = None,
) -> str:
    """Log a report folder as the artifacts (``report/``) of a new MLflow run, with the
    headline numbers as metrics; returns the run id. Uses an explicit client, so the
    process-wide MLflow tracking URI is left as it was."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(tracking_uri, tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment_name, artifact_location=_artifact_location(tracking_uri or "")
    )
    run = client.create_run(exp_id, run_name=run_name)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        client.log_artifacts(run_id, str(report_dir), artifact_path="report")
        if analysis is not None:
            now = int(time.time() * 1000)
            tags = {"patron.kind": "ab", "patron.experiment": analysis.experiment,
                    "patron.verdict": analysis.verdict}
            metrics = {}
            for r in analysis.variants.to_dict(orient="records"):
                for key in ("customers", "conversion_rate", "revenue_per_customer"):
                    val = r.get(key)
                    if val is not None and np.isfinite(val):
                        metrics[f"{r['variant']}.{key}"] = float(val)
            comps = analysis.comparisons
            for r in comps.to_dict(orient="records") if not comps.empty else []:
                for key in ("diff", "relative", "p_value", "p_always_valid"):
                    if np.isfinite(r[key]):
                        metrics[f"{r['variant']}.{r['metric']}.{key}"] = float(r[key])
            if analysis.srm:
                metrics["srm_p_value"] = float(analysis.srm["p_value"])
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id
