"""One PNG overview of the customer base: segment sizes vs revenue share, NES stage counts.

English labels only: the Chinese value-segment names live in the tables and CSV files (the
default matplotlib font has no CJK glyphs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.customers.nes import NES_STAGE
from features.customers.rfm import NAMED_SEGMENT, VALUE_SEGMENT
from features.customers.tables import summarize


def _share_bars(ax, summary: pd.DataFrame, title: str) -> None:
    labels = list(summary.index)
    y = np.arange(len(labels))
    h = 0.38
    cs = summary["customer_share"].to_numpy() * 100
    rs = summary["revenue_share"].to_numpy() * 100
    ax.barh(y - h / 2, cs, h, label="% of customers", color="#4C72B0")
    ax.barh(y + h / 2, rs, h, label="% of revenue", color="#DD8452")
    for yi, c, r, n in zip(y, cs, rs, summary["customers"].to_numpy(), strict=True):
        ax.text(c + 0.5, yi - h / 2, f"{c:.0f}% ({n:,})", va="center", fontsize=8)
        ax.text(r + 0.5, yi + h / 2, f"{r:.0f}%", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("share (%)")
    ax.set_xlim(0, max(cs.max(), np.nan_to_num(rs).max()) * 1.25 + 1)
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def plot_segments(customers: pd.DataFrame, path: str | Path, title: str = "Customers") -> Path:
    """Save the overview PNG (named segments, value segments, NES stages) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = summarize(customers, NAMED_SEGMENT)
    value = summarize(customers, VALUE_SEGMENT)
    nes = summarize(customers, NES_STAGE)
    fig, axes = plt.subplots(1, 3, figsize=(17, 6), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    _share_bars(axes[0], named, "RFM segments: customers vs revenue")
    _share_bars(axes[1], value, "Value segments (vs population mean)")
    ax = axes[2]
    labels = [s + "\n" + lab.replace("/", "/\n") for s, lab in zip(nes.index, nes["label"], strict=True)]
    colors = ["#55A868", "#4C72B0", "#CCB974", "#DD8452", "#C44E52"][: len(nes)]
    bars = ax.bar(labels, nes["customers"].to_numpy(), color=colors)
    for b, n, r in zip(bars, nes["customers"].to_numpy(), nes["revenue_share"].to_numpy(),
                       strict=True):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{n:,}\n{r * 100:.0f}% rev.",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("customers")
    ax.set_ylim(0, nes["customers"].max() * 1.2)
    ax.set_title("NES lifecycle stage", loc="left", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=13)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_segments"]
