"""Credit analysis of team-draft interleaving (the serving side builds the lists).

Each interleaved list records which variant ("team") contributed each item. A request
is won by the team whose items converted more often in it; requests without a conversion
carry no preference and are counted, not scored. The preference is

    delta = (wins_a - wins_b) / (wins_a + wins_b + ties)

over requests with at least one conversion, with a bootstrap interval over those requests
(per-request score +1 / 0 / -1) and an exact two-sided sign test of wins against losses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from experiments import stats

__all__ = ["InterleavingResult", "credit", "analyze_credit"]


@dataclass(frozen=True)
class InterleavingResult:
    team_a: str
    team_b: str
    requests: int
    requests_with_conversion: int
    wins_a: int
    wins_b: int
    ties: int
    preference: float  # delta > 0: team_a preferred
    preference_low: float
    preference_high: float
    p_sign: float
    p_bootstrap: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def winner(self) -> str | None:
        if self.p_sign >= 0.05:
            return None
        return self.team_a if self.wins_a > self.wins_b else self.team_b


def credit(frame: pd.DataFrame, teams: tuple[str, str]) -> pd.DataFrame:
    """Per request: converted items credited to each team.

    ``frame`` has one row per request with ``request_id``, ``items`` (list),
    ``teams`` (list, the contributing team of each item) and ``converted_items`` (list).
    Returns ``request_id, credit_a, credit_b, score`` (score +1 a wins, -1 b wins, 0 tie
    or no conversion) and ``has_conversion``.
    """
    a, b = teams
    lens_i = frame["items"].str.len().fillna(0).astype(int)
    lens_t = frame["teams"].str.len().fillna(0).astype(int)
    bad = lens_i != lens_t
    if bad.any():
        rid = frame.loc[bad, "request_id"].iloc[0]
        raise ValueError(f"request {rid}: items and teams differ in length")
    ex = frame[["request_id", "items", "teams"]].explode(["items", "teams"]).dropna()
    ex = pd.DataFrame({
        "request_id": ex["request_id"], "item": ex["items"].astype(str), "team": ex["teams"].astype(str),
    })
    conv = frame[["request_id", "converted_items"]].explode("converted_items").dropna()
    conv = pd.DataFrame(
        {"request_id": conv["request_id"], "item": conv["converted_items"].astype(str)}
    ).drop_duplicates()
    hit = ex.merge(conv, on=["request_id", "item"], how="inner")
    counts = pd.crosstab(hit["request_id"], hit["team"]) if len(hit) else pd.DataFrame()
    out = pd.DataFrame({"request_id": frame["request_id"].to_numpy()})
    for name, col in ((a, "credit_a"), (b, "credit_b")):
        ser = counts[name] if name in counts else pd.Series(dtype=np.int64)
        out[col] = out["request_id"].map(ser).fillna(0).astype(np.int64)
    out["score"] = np.sign(out["credit_a"] - out["credit_b"]).astype(np.int64)
    out["has_conversion"] = (out["credit_a"] + out["credit_b"]) > 0
    return out


def analyze_credit(
    per_request: pd.DataFrame, teams: tuple[str, str], n_boot: int = 2000, alpha: float = 0.05,
    seed: int = 0,
) -> InterleavingResult:
    """Wins, losses, ties, preference with its bootstrap interval and the sign test."""
    scored = per_request.loc[per_request["has_conversion"], "score"].to_numpy(np.float64)
    wins_a, wins_b = int((scored > 0).sum()), int((scored < 0).sum())
    ties = int((scored == 0).sum())
    if scored.size:
        boots = stats.bootstrap_means(scored, n_boot, seed)
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
        d = float(scored.mean())
        p_boot = float(min(1.0, (1 + np.sum(np.abs(boots - d) >= abs(d))) / (n_boot + 1)))
    else:
        d, lo, hi, p_boot = float("nan"), float("nan"), float("nan"), 1.0
    return InterleavingResult(
        team_a=teams[0], team_b=teams[1], requests=int(len(per_request)),
        requests_with_conversion=int(scored.size), wins_a=wins_a, wins_b=wins_b, ties=ties,
        preference=d, preference_low=float(lo), preference_high=float(hi),
        p_sign=stats.sign_test(wins_a, wins_b), p_bootstrap=p_boot,
    )
