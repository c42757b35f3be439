"""Test helpers for serving: small real artifacts from the synthetic log, a live service."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.artifact import ModelArtifact
from features.idmap import IdMap
from features.synthetic import generate_purchases

ROOT = Path(__file__).resolve().parents[1]


def cooccurrence(p: pd.DataFrame, items: IdMap, min_count: int = 3):
    """Lift and confidence CSR (items x items) over orders, pairs seen >= ``min_count`` times."""
    orders = IdMap.from_values(p["order_id"])
    r = orders.index_of(p["order_id"].to_numpy())
    c = items.index_of(p["item_id"].to_numpy())
    B = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(orders), len(items)))
    B.data[:] = 1.0
    B.sum_duplicates()
    B.data[:] = 1.0
    co = (B.T @ B).tocoo()
    cnt = np.asarray(B.sum(axis=0)).ravel()
    keep = (co.row != co.col) & (co.data >= min_count)
    i, j, v = co.row[keep], co.col[keep], co.data[keep]
    conf = v / cnt[i]
    lift = conf / (cnt[j] / len(orders))
    n = len(items)
    return (
        sp.csr_matrix((lift.astype(np.float32), (i, j)), shape=(n, n)),
        sp.csr_matrix((conf.astype(np.float32), (i, j)), shape=(n, n)),
        cnt,
        len(orders),
    )


def build_artifact(path: Path, seed: int = 0, factors: int = 16, n_customers: int = 300):
    """Train a small ALS (implicit) on a synthetic log and save a full serving artifact.

    Returns ``(artifact, synthetic_log)``.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    log = generate_purchases(n_customers=n_customers, n_items=120, seed=seed)
    p = log.purchases
    customers = IdMap.from_values(p["customer_id"])
    items = IdMap.from_values(p["item_id"])
    r = customers.index_of(p["customer_id"].to_numpy())
    c = items.index_of(p["item_id"].to_numpy())
    counts = sp.csr_matrix(
        (np.ones(len(r), np.float32), (r, c)), shape=(len(customers), len(items))
    )
    counts.sum_duplicates()
    hist = counts.copy()
    hist.data = np.log1p(hist.data).astype(np.float32)
    als = AlternatingLeastSquares(
        factors=factors, regularization=0.05, alpha=2.0, iterations=8, random_state=seed
    )
    als.fit(hist, show_progress=False)
    cat = log.truth.items.set_index("item_id")
    price = cat["base_price"].astype(float)
    tier = price.groupby(cat["category"]).rank(method="dense", pct=True)
    table = pd.DataFrame({
        "item_id": cat.index.to_numpy(),
        "category": cat["category"].to_numpy(),
        "price": price.to_numpy(),
        "price_tier": np.ceil(tier.to_numpy() * 3).astype(int),  # 1..3 within category
        "item_name": cat["item_name"].to_numpy(),
    })
    lift, conf, baskets, n_baskets = cooccurrence(p, items)
    art = ModelArtifact(
        kind="factors",
        model_name="als",
        customers=customers,
        items=items,
        arrays={
            "user_factors": np.asarray(als.user_factors, np.float32),
            "item_factors": np.asarray(als.item_factors, np.float32),
            "item_scores": np.asarray((hist > 0).sum(axis=0), np.float32).ravel(),
            "xsell_lift": lift,
            "xsell_confidence": conf,
            "item_baskets": baskets.astype(np.float32),
        },
        history=hist,
        params={"factors": factors, "regularization": 0.05, "alpha": 2.0, "n_baskets": n_baskets},
        weighting={"weighting": "log1p"},
        metadata={"data": {"source": "synthetic", "seed": seed}},
        item_table=table,
    )
    art.save(path)
    return art, log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveService:
    """``bentoml serve serving.service:Recommender`` as a subprocess on a free port."""

    def __init__(self, env: dict, workdir: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"service-{self.port}.log"
        full = dict(os.environ)
        full.update(env)
        full["PATRON_WORKERS"] = str(workers)
        full.setdefault("PATRON_RELOAD_SIGNAL", str(workdir / f"reload-{self.port}.json"))
        full["PYTHONPATH"] = str(ROOT)
        bentoml = Path(sys.executable).with_name("bentoml")
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(bentoml), "serve", "serving.service:Recommender", "--host", "127.0.0.1",
             "--port", str(self.port), "--working-dir", str(ROOT)],
            cwd=ROOT, env=full, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.logs()[-3000:]}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"service not ready in {timeout}s: {self.logs()[-3000:]}")

    def post(self, path: str, body: dict, **kw) -> httpx.Response:
        return self.client.post(path, json=body, **kw)

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
