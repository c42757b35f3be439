"""Issue 20: forget customers everywhere, then prove it by scanning every file of the project
(and the exposure table) for their raw ids and their keys; retention; keys kept away from
the logs. Real CLI, real services over HTTP, real SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features.synthetic import generate_purchases
from tests.test_project_loop import PATRON, Serving, _env, patron

pytestmark = pytest.mark.slow
FORGET = ["shopper-0003", "shopper-0007", "shopper-0011"]
TOKEN = "forget-token"
PG = os.environ.get("PATRON_TEST_POSTGRES_URL")


def _contents(p: Path) -> list[bytes]:
    """What a file holds, readable: Parquet and .npz values as text, SQLite as its SQL dump,
    anything else as bytes in UTF-8 and as UTF-16/32 (how numpy stores unicode arrays)."""
    import sqlite3

    import numpy as np

    raw = p.read_bytes()
    out = [raw]
    if raw[:4] == b"PAR1":
        df = pd.read_parquet(p)
        out.append("\n".join(df.astype(str).agg(" ".join, axis=1)).encode())
    elif raw[:2] == b"PK" and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            out += [" ".join(map(str, z[k].ravel().tolist())).encode() for k in z.files]
    elif raw[:16] == b"SQLite format 3\x00":
        con = sqlite3.connect(p)
        out.append("\n".join(con.iterdump()).encode(errors="replace"))
        con.close()
    return out


def _scan(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` that hold any needle (a raw id or a key) in any of their forms."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                blobs = _contents(p)
            except Exception:  # unreadable as its type: scan the bytes only
                blobs = [p.read_bytes()]
            for n in needles:
                forms = [n, n.decode().encode("utf-16-le"), n.decode().encode("utf-32-le")]
                if any(form in blob for form in forms for blob in blobs):
                    hits.append(f"{p.relative_to(root)}: {n[:20]!r}")
    return hits


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("privacy")
    shop = tmp / "shop"
    (shop / "logs").mkdir(parents=True)
    (shop / ".patron").mkdir()  # this folder is the project, whatever lies above it
    p = generate_purchases(n_customers=200, n_items=80, n_days=150, seed=5).purchases
    p["customer_id"] = p["customer_id"].map(lambda c: f"shopper-{int(c):04d}")
    (tmp / "exports").mkdir()  # the shop's own export, outside the project: not Patron's to edit
    p.to_csv(tmp / "exports" / "export.csv", index=False)
    env = _env(tmp) | {"PATRON_ADMIN_TOKEN": TOKEN, "PATRON_KEY_FILE": str(tmp / "secrets" / "keys")}
    assert patron(["ingest", "../exports/export.csv", "-o", "data"], shop, env).returncode == 0
    r = patron(["train", "--data", "data", "--model", "itemknn", "--register", "patron"], shop, env)
    assert r.returncode == 0 and "promotion: first" in r.stdout, r.stderr[-2000:]
    r = patron(["train", "--data", "data", "--model", "als", "--register", "patron", "--no-promote",
                "--params", json.dumps({"factors": 8, "iterations": 3})], shop, env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert patron(["promote", "--version", "2", "--challenger"], shop, env).returncode == 0
    return {"tmp": tmp, "shop": shop, "env": env}


def _serve(shop, extra: dict, log: str) -> Serving:
    args = [PATRON, "serve", "--model", "models:/patron@champion"]
    if "exposure_log" in extra:
        args += ["--exposure-log", extra.pop("exposure_log")]
    s = Serving(args, shop["shop"], shop["env"] | extra, shop["tmp"] / log)
    s.wait()
    return s


def test_forget_everywhere_then_nothing_of_them_is_left(shop):
    root = shop["shop"]
    services = [_serve(shop, {"exposure_log": "logs/exposures.jsonl"}, "file.log")]
    if PG:
        services.append(_serve(shop, {"PATRON_EXPOSURE_URL": PG}, "pg.log"))
    others = ["shopper-0001", "shopper-0020"]
    try:
        for s in services:
            for c in FORGET + others:
                r = httpx.post(s.url + "/recommend", json={"customer_id": c, "n": 3})
                assert r.status_code == 200 and r.json()["strategy"] != "popularity", r.text
        from serving.keys import customer_key, load_keyring

        os.environ["PATRON_KEY_FILE"] = shop["env"]["PATRON_KEY_FILE"]
        ring = load_keyring(None, create=False)
        keys = [customer_key(ring.current, c).encode() for c in FORGET]
        assert _scan(root, [FORGET[0].encode()]), "the raw id should be in the stores before"
        assert _scan(root / "logs", keys[:1])
        cmd = ["forget", *FORGET, *[a for s in services for a in ("--notify", s.url)]]
        if PG:
            cmd += ["--exposure-url", PG]
        r = patron(cmd, root, shop["env"])
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        assert "retired" in r.stdout and FORGET[0] not in r.stdout + r.stderr
        assert "export.csv" in r.stdout  # the raw source is named for the operator to clean
        # every file of the project: no raw id, no key
        left = _scan(root, [c.encode() for c in FORGET] + keys)
        assert left == [], left
        if PG:
            from serving.exposure_pg import pg_keyring, read_exposures_pg

            df, _ = read_exposures_pg(PG)
            pg_keys = {customer_key(s_, c) for s_ in pg_keyring(PG).secrets for c in FORGET}
            assert not df["customer_key"].isin(pg_keys).any()
        for s in services:  # reloaded: they do not know them; others still get the refit model
            for c in FORGET:
                r = httpx.post(s.url + "/recommend", json={"customer_id": c, "n": 3}).json()
                assert r["strategy"] == "popularity" and "customer_id: unknown customer" in r["warnings"]
            for c in others:
                r = httpx.post(s.url + "/recommend", json={"customer_id": c, "n": 3}).json()
                assert r["strategy"] == "personalised"
            info = httpx.get(s.url + "/info").json()
            assert int(info["models"][0]["registry_version"]) > 2  # the refit version
    finally:
        for s in services:
            s.stop()
    audits = list((root / ".patron" / "audit").glob("forget-*.json"))
    record = json.loads(audits[-1].read_text())
    assert record["customers"] == 3 and record["versions_retired"] == ["1", "2"]
    assert {x["store"] for x in record["stores"]} >= {"purchases", "exposure_log"}
    # idempotent: a second run finds nothing left in the stores and the registry (the
    # exposures of the requests made above, after the first run, are removed again)
    r = patron(["forget", *FORGET], root, shop["env"])
    assert r.returncode == 0, r.stdout
    assert "purchase stores: 1 checked, 0 rows removed" in r.stdout
    assert "registry: 0 version(s) refit without them, 0 retired" in r.stdout


def test_keep_versions_refuses_before_changing_anything(shop):
    root = shop["shop"]
    target = "shopper-0030"
    before = (root / "data" / "purchases.parquet").read_bytes()
    r = patron(["forget", target, "--keep-versions"], root, shop["env"])
    assert r.returncode == 3 and "--keep-versions" in r.stdout
    assert (root / "data" / "purchases.parquet").read_bytes() == before


def test_a_killed_forget_is_finished_by_the_next_run(shop):
    root = shop["shop"]
    targets = ["shopper-0040", "shopper-0041"]
    for delay in (1.0, 4.0):  # killed early (stores) and later (refit / registry)
        proc = subprocess.Popen([PATRON, "forget", *targets], cwd=root, env=shop["env"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if delay < 2:
            assert proc.poll() is None  # killed mid-run, not after it
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        p = pd.read_parquet(root / "data" / "purchases.parquet")  # always a whole file
        assert len(p) > 0
    r = patron(["forget", *targets], root, shop["env"])
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert _scan(root, [t.encode() for t in targets]) == []
    from features.model_store import fetch_registered  # the champion still loads

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / '.patron' / 'mlflow.db'}"
    try:
        path, _ = fetch_registered("models:/patron@champion")
        assert (path / "manifest.json").is_file()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_retention_purge_keeps_recent_records_and_daily_files(tmp_path, monkeypatch):
    from patron.privacy import purge
    from serving.exposure import ExposureLog, read_exposures

    monkeypatch.setenv("PATRON_KEY_FILE", str(tmp_path / "k" / "keys"))
    log = tmp_path / "exp.jsonl"
    old = tmp_path / "exp-2020-01-01.jsonl"
    old.write_text(json.dumps({"ts": 1577836800.0, "request_id": "o", "items": []}) + "\n")
    w = ExposureLog(log, roll="")
    now = time.time()
    for i, ts in enumerate([now - 40 * 86400, now - 10 * 86400, now]):
        w.write({"ts": ts, "request_id": str(i), "items": []})
    w.close()
    assert len(read_exposures(log)[0]) == 4  # the base file and its daily file
    out = purge(30, exposure_logs=[str(log)], say=lambda *_: None)
    assert out == {"files_deleted": 1, "records_removed": 1, "cutoff": out["cutoff"]}
    df, _ = read_exposures(log)
    assert sorted(df["request_id"]) == ["1", "2"]
    rolled = ExposureLog(tmp_path / "daily.jsonl", roll="daily")
    rolled.write({"ts": now, "request_id": "d", "items": []})
    rolled.close()
    assert list(tmp_path.glob("daily-*.jsonl")) and read_exposures(tmp_path / "daily.jsonl")[0]["request_id"].tolist() == ["d"]


def test_keys_never_lie_beside_the_log_and_rotation_still_matches(tmp_path, monkeypatch):
    from serving.exposure import ExposureLog
    from serving.keys import load_keyring, rotate, weak_id_warning

    monkeypatch.delenv("PATRON_EXPOSURE_SECRET", raising=False)
    monkeypatch.setenv("PATRON_KEY_FILE", str(tmp_path / "secrets" / "keys"))
    w = ExposureLog(tmp_path / "logs" / "e.jsonl")
    k_old = w.key("c1")
    w.close()
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["e.jsonl"]
    assert oct((tmp_path / "secrets" / "keys").stat().st_mode & 0o777) == "0o600"
    rotate()
    ring = load_keyring(None, create=False)
    assert ring.key("c1") != k_old and k_old in ring.all_keys("c1")
    assert weak_id_warning([1, 2, 3]) and weak_id_warning(["a-long-customer-id-123"] * 3) is None
    os.chmod(tmp_path / "secrets" / "keys", 0o644)
    with pytest.raises(Exception, match="readable by no one else"):
        load_keyring(None)


def test_no_raw_id_in_the_registry_example_or_the_outcomes(shop):
    root = shop["shop"]
    examples = list((root / ".patron" / "mlartifacts").rglob("input_example.json"))
    assert examples
    for e in examples:
        assert "shopper-" not in e.read_text()
    from experiments.ab_run import OUTCOME_COLUMNS

    assert "customer_id" not in OUTCOME_COLUMNS
