"""Issue 16: the shop's loop as a user runs it, from a fresh project folder and a sub-folder,
with the defaults: ingest -> tune --register -> serve models:/patron@champion -> compare ->
build a bento and serve it with no registry -> retrain (promoted, kept, refused, killed).
Every step is the real CLI in a subprocess; nothing names a tracking store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features.synthetic import generate_purchases
from tests.serving_helpers import free_port

pytestmark = pytest.mark.slow
PATRON = str(Path(sys.executable).with_name("patron"))
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PATRON_MODEL_URI")}
    env.update(BENTOML_HOME=str(tmp / "bentoml"), PATRON_RUN_DIR=str(tmp / "run"),
               MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true")
    return env


def patron(args: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PATRON, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A shop folder with an early export (ingested, tuned, registered) and a later one."""
    tmp = tmp_path_factory.mktemp("loop")
    shop = tmp / "shop"
    (shop / "reports").mkdir(parents=True)
    # the project root, as the first ingest in a fresh folder makes it: a .patron/ in some
    # folder above (a user's home, /tmp) must not swallow this project
    (shop / ".patron").mkdir()
    p = generate_purchases(n_customers=300, n_items=120, n_days=180, seed=3).purchases
    p.to_csv(shop / "all.csv", index=False)
    cut = p["timestamp"].max() - pd.Timedelta(days=28)
    p[p["timestamp"] < cut].to_csv(shop / "early.csv", index=False)
    env = _env(tmp)
    for src, out in (("early.csv", "data"), ("all.csv", "data2")):
        r = patron(["ingest", src, "-o", out], shop, env)
        assert r.returncode == 0, r.stderr
    r = patron(["tune", "--data", "data", "--models", "itemknn", "--trials", "2",
                "--register", "patron", "--no-progress"], shop, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "registered patron version 1" in r.stdout and "promotion: first" in r.stdout
    assert (shop / ".patron" / "mlflow.db").is_file()
    early_end = pd.read_parquet(shop / "data" / "purchases.parquet")["timestamp"].max()
    return {"tmp": tmp, "shop": shop, "env": env, "early_end": early_end}


class Serving:
    def __init__(self, cmd: list[str], cwd: Path, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], cwd=cwd, env=env,
                                     stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("not ready: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


def test_serve_the_champion_from_a_sub_folder_with_no_tracking_flag(project):
    shop, env = project["shop"], project["env"]
    s = Serving([PATRON, "serve", "--model", "models:/patron@champion"], shop / "reports", env,
                project["tmp"] / "serve.log")
    try:
        s.wait()
        info = httpx.get(s.url + "/info").json()
        model = info["models"][0]
        assert model["version"] == "patron/1" and model["alias"] == "champion"
        # refit on every purchase: the served data ends where the data ends
        assert pd.Timestamp(model["data"]["span"][1]) == project["early_end"]
        cust = int(pd.read_parquet(shop / "data" / "purchases.parquet")["customer_id"].iloc[0])
        prof = httpx.post(s.url + "/customer_profile", json={"customer_id": cust}).json()
        assert prof["profile"]["as_of"] == str((project["early_end"] + pd.Timedelta(days=1)).date())
        assert httpx.post(s.url + "/recommend", json={"customer_id": cust, "n": 3}).status_code == 200
    finally:
        s.stop()
    assert not (shop / "reports" / "mlflow.db").exists() and not (shop / "reports" / ".patron").exists()


def test_the_version_carries_its_split_evidence_and_both_fits(project):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project['shop'] / '.patron' / 'mlflow.db'}"
    mv = MlflowClient(uri, uri).get_model_version("patron", "1")
    assert mv.tags["patron.split_id"] and mv.tags["patron.fit"] == "all"
    assert mv.tags["patron.evidence_run_id"] and "patron.test.new.ndcg_at_10" in mv.tags
    assert float(mv.tags["patron.baseline.test.new.ndcg_at_10"]) > 0
    assert mv.tags["patron.promote.decision"] == "first"


def test_compare_with_the_alias_from_a_sub_folder(project):
    r = patron(["compare", "--data", "../data", "--models", "popularity,models:/patron@champion",
                "--reference", "popularity", "--k", "10", "--holdout-days", "28"],
               project["shop"] / "reports", project["env"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "models:/patron@champion" in r.stdout


def test_a_folder_outside_the_project_creates_no_store_and_names_what_it_searched(project):
    elsewhere = project["tmp"] / "elsewhere"
    elsewhere.mkdir()
    r = patron(["promote", "--name", "patron", "--version", "1"], elsewhere, project["env"])
    assert r.returncode == 2 and "no Patron project found" in r.stderr and str(elsewhere) in r.stderr
    r = patron(["serve", "--model", "models:/patron@champion"], elsewhere, project["env"])
    assert r.returncode == 2 and "no Patron project found" in r.stderr
    assert list(elsewhere.iterdir()) == []
    r = patron(["serve", "--model", "models:/patron@nope"], project["shop"], project["env"])
    assert r.returncode == 2 and "not found in the registry of sqlite:///" in r.stderr
    assert "it holds patron (v1..v" in r.stderr and "@champion=v1" in r.stderr


def test_relative_model_paths_mean_where_they_were_typed(project, tmp_path):
    from tests.serving_helpers import build_artifact

    build_artifact(project["shop"] / "reports" / "local_model", seed=2)
    s = Serving([PATRON, "serve", "--model", "local_model"], project["shop"] / "reports",
                project["env"], tmp_path / "serve.log")
    try:
        s.wait()
        assert httpx.get(s.url + "/info").json()["models"][0]["model_name"] == "als"
    finally:
        s.stop()


def test_a_built_bento_serves_the_champion_with_no_registry(project):
    shop, env = project["shop"], project["env"]
    r = patron(["build"], shop, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "patron/1 inside" in r.stdout
    elsewhere = project["tmp"] / "bento-run"
    elsewhere.mkdir()
    s = Serving([BENTOML, "serve", "patron:latest"], elsewhere, env, project["tmp"] / "bento.log")
    try:
        s.wait()
        info = httpx.get(s.url + "/info").json()
        assert info["models"][0]["model_name"] == "itemknn"
        assert httpx.post(s.url + "/recommend", json={"customer_id": 1, "n": 3}).status_code == 200
    finally:
        s.stop()


def _champion(project) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{project['shop'] / '.patron' / 'mlflow.db'}"
    return MlflowClient(uri, uri).get_model_version_by_alias("patron", "champion").version


def test_retrain_kept_refused_killed_then_promoted(project):
    shop, env = project["shop"], project["env"]
    before = _champion(project)
    # a candidate below the champion's configuration on the newest split: kept (exit 3)
    r = patron(["retrain", "--data", "data2", "--model", "itemknn", "--params",
                json.dumps({"neighbours": 3})], shop, env)
    assert r.returncode == 3 and "KEPT" in r.stdout, r.stdout + r.stderr[-2000:]
    # a candidate no better than a baseline: refused (exit 4)
    r = patron(["retrain", "--data", "data2", "--model", "popularity"], shop, env)
    assert r.returncode == 4 and "REFUSED" in r.stdout, r.stdout + r.stderr[-2000:]
    assert _champion(project) == before
    # killed in the middle: the champion is unchanged and still loads; the lock is free again
    proc = subprocess.Popen([PATRON, "retrain", "--data", "data2", "--tune", "--trials", "200"],
                            cwd=shop, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(8)
    assert proc.poll() is None, proc.stdout.read()[-2000:]  # killed mid-run, not after it
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert _champion(project) == before
    from features.model_store import fetch_registered

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{shop / '.patron' / 'mlflow.db'}"
    try:
        path, _ = fetch_registered("models:/patron@champion")
        assert (path / "manifest.json").is_file()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    # the champion's configuration on the newest data: promoted (exit 0), data span = data end
    r = patron(["retrain", "--data", "data2"], shop, env)
    assert r.returncode == 0 and "PROMOTED" in r.stdout, r.stdout + r.stderr[-2000:]
    after = _champion(project)
    assert int(after) > int(before)
    from mlflow import MlflowClient

    uri = f"sqlite:///{shop / '.patron' / 'mlflow.db'}"
    mv = MlflowClient(uri, uri).get_model_version("patron", after)
    end = pd.read_parquet(shop / "data2" / "purchases.parquet")["timestamp"].max()
    assert mv.tags["patron.fit_span"].endswith(str(end))
    assert mv.tags["patron.retrain_of"] == str(before)


def test_retrain_is_one_at_a_time(project, tmp_path):
    from features.errors import PatronError
    from training.retrain import RetrainLock

    lock = tmp_path / "retrain.lock"
    with RetrainLock(lock), pytest.raises(PatronError, match="another patron retrain is running"):
        with RetrainLock(lock):
            pass
    with RetrainLock(lock):  # free again
        pass


def test_registered_model_loads_in_a_fresh_venv_with_only_what_it_declares(project, tmp_path):
    """mlflow.pyfunc.load_model("models:/patron@champion") in a new virtualenv that installs
    only the model's requirements.txt (Patron's code travels with the model)."""
    import shutil

    from features.model_store import fetch_registered

    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    uri = f"sqlite:///{project['shop'] / '.patron' / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        local, _ = fetch_registered("models:/patron@champion")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    reqs = (local.parents[1] / "requirements.txt") if not (local / "requirements.txt").exists() else local / "requirements.txt"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)
    r = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "-r",
                        str(reqs)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import mlflow, pandas as pd\n"
            "m = mlflow.pyfunc.load_model('models:/patron@champion')\n"
            "print(len(m.predict(pd.DataFrame({'customer_id': ['1', 2], 'n': [3, 3]}))))\n")  # text or number
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "6"
    listed = subprocess.run([uv, "pip", "list", "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True).stdout.lower()
    assert "mlflow" in listed and "patron" not in listed  # only what the model declares
