"""`patron serve` starts the real service; `bentoml build` packs it offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving_helpers import ROOT, build_artifact, free_port


@pytest.mark.slow
def test_patron_serve_starts_and_serves(tmp_path):
    build_artifact(tmp_path / "model", seed=3)
    port = free_port()
    env = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml"),
               PATRON_RUN_DIR=str(tmp_path / "run"))
    env.pop("PATRON_EXPERIMENTS", None)
    patron = Path(sys.executable).with_name("patron")
    out = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(patron), "serve", "--model", str(tmp_path / "model"), "--port", str(port),
         "--exposure-log", str(tmp_path / "exp.jsonl")],
        env=env, stdout=out, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        info = httpx.get(f"{url}/info").json()
        assert info["models"][0]["model_name"] == "als" and str(tmp_path) not in json.dumps(info)
        r = httpx.post(f"{url}/recommend", json={"customer_id": 1, "n": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert (tmp_path / "exp.jsonl").read_text().count("\n") == 1
    finally:
        proc.terminate()
        proc.wait(20)
        out.close()


def test_patron_serve_bad_model_path_is_one_line(tmp_path):
    r = subprocess.run([str(Path(sys.executable).with_name("patron")), "serve", "--model",
                        str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a Patron model artifact" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_bentoml_build_offline(tmp_path):
    env = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml"))
    bentoml = Path(sys.executable).with_name("bentoml")
    r = subprocess.run([str(bentoml), "build"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Successfully built Bento" in r.stdout + r.stderr
    built = list((tmp_path / "bentoml" / "bentos" / "patron").glob("*/src/serving/service.py"))
    assert built and list(built[0].parent.glob("widget/patron-widget.js"))
