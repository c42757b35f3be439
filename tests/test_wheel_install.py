"""Issue 22: the wheel built from the repo, installed in a fresh virtualenv, ingests a shop's
own export (semicolon-separated, latin-1, with a postage line) and serves /widget."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving_helpers import ROOT, build_artifact, free_port

pytestmark = pytest.mark.slow


def test_wheel_in_a_fresh_venv_ingests_an_own_export_and_serves_the_widget(tmp_path):
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    dist = tmp_path / "dist"
    r = subprocess.run([uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(dist.glob("patron-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "serving/widget/patron-widget.js" in names and "serving/widget/index.html" in names
    assert "experiments/configs/ab_example.yaml" in names
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    py = str(venv / "bin" / "python")
    r = subprocess.run([uv, "pip", "install", "--python", py, "-r", str(ROOT / "requirements.lock")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([uv, "pip", "install", "--python", py, "--no-deps", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "export.csv").write_bytes(
        "Kunde;Artikel;Datum;Menge;Preis;Beschreibung\n"
        "1001;A1;2024-01-02;1;2.5;Kaffeem\u00fchle\n"
        "1001;POST;2024-01-02;1;5;POSTAGE\n"
        "1002;A2;2024-01-03;2;3;K\u00e4se\n"
        "1003;A1;2024-01-04;1;2.5;Kaffeem\u00fchle\n".encode("latin-1"))
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(tmp_path / "bentoml"), "PATRON_RUN_DIR": str(tmp_path / "run")}
    mapping = ["--map", "customer_id=Kunde", "--map", "item_id=Artikel", "--map", "timestamp=Datum",
               "--map", "quantity=Menge", "--map", "price=Preis", "--map", "item_name=Beschreibung"]
    patron = str(venv / "bin" / "patron")
    r = subprocess.run([patron, "ingest", "export.csv", "-o", "data", *mapping], cwd=shop, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "semicolon-separated, latin-1 (detected" in r.stdout
    assert "POST 'POSTAGE' (name)" in r.stdout and "--drop-suspected-non-products" in r.stdout
    r = subprocess.run([patron, "ingest", "export.csv", "-o", "data", *mapping,
                        "--drop-suspected-non-products"], cwd=shop, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "non_product" in r.stdout, r.stdout + r.stderr[-2000:]
    check = subprocess.run([py, "-c", "import pandas as pd; p = pd.read_parquet('data/purchases.parquet');"
                            " print(sorted(p.item_id), sorted(p.item_name))"], cwd=shop, env=env,
                           capture_output=True, text=True)
    assert check.stdout.strip() == "['A1', 'A1', 'A2'] ['Kaffeemühle', 'Kaffeemühle', 'Käse']", check
    build_artifact(shop / "model", seed=1)
    port = free_port()
    proc = subprocess.Popen([patron, "serve", "--model", "model", "--port", str(port)], cwd=shop, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None
            time.sleep(0.5)
        page = httpx.get(f"http://127.0.0.1:{port}/widget")
        js = httpx.get(f"http://127.0.0.1:{port}/widget/patron-widget.js")
        assert page.status_code == 200 and "patron-widget" in page.text
        assert js.status_code == 200 and "Bought together" in js.text
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
