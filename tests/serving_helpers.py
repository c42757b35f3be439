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

from features.artifact import ModelArtifact
from features.synthetic import generate_purchases

ROOT = Path(__file__).resolve().parents[1]


def build_artifact(path: Path, seed: int = 0, factors: int = 16, n_customers: int = 300):
    """Train a small ALS (implicit) on a synthetic log and save a full serving artifact
    (features.matrix + item_features + cooccurrence, as training builds it).

    Returns ``(artifact, synthetic_log)``.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    from features.cooccurrence import cross_sell_arrays
    from features.item_features import item_table
    from features.matrix import MatrixConfig, build_interactions

    log = generate_purchases(n_customers=n_customers, n_items=120, seed=seed)
    p = log.purchases
    im = build_interactions(p, MatrixConfig(weighting="log1p"))
    als = AlternatingLeastSquares(
        factors=factors, regularization=0.05, alpha=2.0, iterations=8, random_state=seed
    )
    als.fit(im.matrix, show_progress=False)
    xsell = cross_sell_arrays(p, im.items, min_support_baskets=3)
    n_baskets = xsell.pop("n_baskets")
    art = ModelArtifact(
        kind="factors",
        model_name="als",
        customers=im.customers,
        items=im.items,
        arrays={
            "user_factors": np.asarray(als.user_factors, np.float32),
            "item_factors": np.asarray(als.item_factors, np.float32),
            "item_scores": np.asarray((im.matrix > 0).sum(axis=0), np.float32).ravel(),
            **xsell,
        },
        history=im.matrix,
        params={"factors": factors, "regularization": 0.05, "alpha": 2.0},
        weighting=im.weighting,
        metadata={"data": {"source": "synthetic", "seed": seed}, "n_baskets": n_baskets},
        item_table=item_table(p, im.items),
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
        full.setdefault("PATRON_RUN_DIR", str(workdir / f"run-{self.port}"))
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
