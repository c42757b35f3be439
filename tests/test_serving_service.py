"""The real service: `bentoml serve serving.service:Recommender` on 127.0.0.1, over HTTP.

One service per module (two models in an A/B split, an interleave experiment, a solo
experiment for reloads, an exposure log, an admin token).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest

from serving.exposure import customer_key, read_exposures
from serving.variants import assign, load_experiments
from tests.serving_helpers import LiveService, build_artifact

pytestmark = pytest.mark.slow  # one real service for the module (about 10 s to start)

SECRET = "test-secret"
TOKEN = "admin-token"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("serving-live")
    art_a, log_a = build_artifact(d / "model_a", seed=1)
    art_b, _ = build_artifact(d / "model_b", seed=2, factors=8)
    shutil.copytree(d / "model_a", d / "model_solo")
    pd.DataFrame({"customer_id": art_a.customers.ids[:5], "segment": ["champion"] * 5,
                  "recency_days": [1.5, 2.0, float("nan"), 4.0, 5.0]}).to_parquet(
        d / "model_a" / "customers.parquet")
    (d / "broken").mkdir()
    (d / "broken" / "manifest.json").write_text('{"format": "patron-model", "format_version": 1}')
    cfg = d / "experiments.yaml"
    cfg.write_text(
        "experiments:\n"
        "  default:\n    salt: t1\n    variants:\n"
        f"      control: {{model: {d / 'model_a'}, weight: 0.5}}\n"
        f"      treatment: {{model: {d / 'model_b'}, weight: 0.5}}\n"
        "  ileave:\n    type: interleave\n    variants:\n"
        f"      control: {{model: {d / 'model_a'}}}\n"
        f"      treatment: {{model: {d / 'model_b'}}}\n"
        "  solo:\n    variants:\n"
        f"      only: {{model: {d / 'model_solo'}}}\n"
    )
    return {"dir": d, "art_a": art_a, "art_b": art_b, "log": log_a, "config": cfg}


@pytest.fixture(scope="module")
def svc(env):
    d = env["dir"]
    s = LiveService(
        {
            "PATRON_EXPERIMENTS": str(env["config"]),
            "PATRON_EXPOSURE_LOG": str(d / "exposures.jsonl"),
            "PATRON_EXPOSURE_SECRET": SECRET,
            "PATRON_ADMIN_TOKEN": TOKEN,
            "BENTOML_HOME": str(d / "bentoml"),
        },
        d,
    )
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def cust(env, i=0):
    return env["art_a"].customers.ids[i].item()


def test_recommend_known_customer(svc, env):
    r = svc.post("/recommend", {"customer_id": cust(env), "n": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 5 and body["strategy"] == "personalised"
    assert body["experiment"] == "default" and body["variant"] in {"control", "treatment"}
    assert body["model_version"].startswith("als@") and body["request_id"]
    assert all(it["reason"] and it["name"] for it in body["items"])
    # numbers as strings name the same customer; the variant is stable
    again = svc.post("/recommend", {"customer_id": str(cust(env)), "n": 5}).json()
    assert [i["item_id"] for i in again["items"]] == [i["item_id"] for i in body["items"]]
    assert again["variant"] == body["variant"]


def test_fallbacks_and_context(svc, env):
    pop = svc.post("/recommend", {"n": 3}).json()
    assert pop["strategy"] == "popularity" and len(pop["items"]) == 3
    unknown = svc.post("/recommend", {"customer_id": "stranger", "n": 3}).json()
    assert unknown["strategy"] == "popularity" and unknown["warnings"]
    machine = env["log"].truth.complements["antecedent"].iloc[0]
    ctx = svc.post("/recommend", {"customer_id": 10**9, "n": 5, "solo": None,
                                  "context_items": [machine, "ghost-item"],
                                  "experiment": "solo"})
    assert ctx.status_code == 400  # unknown field "solo" is refused, naming it
    ctx = svc.post("/recommend", {"customer_id": 10**9, "n": 5,
                                  "context_items": [machine, "ghost-item"],
                                  "experiment": "solo"}).json()
    assert ctx["strategy"] == "folded_in"
    assert any("ghost-item" in w for w in ctx["warnings"])
    assert machine not in [i["item_id"] for i in ctx["items"]]
    known = svc.post("/recommend", {"customer_id": cust(env), "n": 5, "experiment": "solo",
                                    "context_items": [machine]}).json()
    assert known["strategy"] == "context"


def test_filters_over_http(svc, env):
    cat = env["log"].truth.items.set_index("item_id")
    body = svc.post("/recommend", {"customer_id": cust(env), "n": 10, "experiment": "solo",
                                   "filters": {"categories_in": ["coffee"],
                                               "price_max": 1000}}).json()
    assert body["items"] and set(cat.loc[[i["item_id"] for i in body["items"]], "category"]) == {
        "coffee"}
    deny = [i["item_id"] for i in body["items"][:2]]
    body2 = svc.post("/recommend", {"customer_id": cust(env), "n": 10, "experiment": "solo",
                                    "filters": {"categories_in": ["coffee"],
                                                "deny_items": deny}}).json()
    assert not set(deny) & {i["item_id"] for i in body2["items"]}


def test_batch_similar_cross_up_sell(svc, env):
    cids = [cust(env, i) for i in range(6)] + ["nobody"]
    b = svc.post("/recommend_batch", {"customer_ids": cids, "n": 4, "experiment": "solo"})
    assert b.status_code == 200, b.text
    res = b.json()["results"]
    assert [r["customer_id"] for r in res] == cids
    assert res[-1]["strategy"] == "popularity" and res[0]["strategy"] == "personalised"
    single = svc.post("/recommend", {"customer_id": cids[2], "n": 4, "experiment": "solo"})
    assert [i["item_id"] for i in res[2]["items"]] == [
        i["item_id"] for i in single.json()["items"]]
    item = env["art_a"].items.ids[7]
    sim = svc.post("/similar_items", {"item_id": item, "n": 4}).json()
    assert len(sim["items"]) == 4 and item not in [i["item_id"] for i in sim["items"]]
    comp = env["log"].truth.complements
    a = comp["antecedent"].iloc[0]
    xs = svc.post("/cross_sell", {"item_ids": [a], "n": 2, "experiment": "solo"}).json()
    assert {i["item_id"] for i in xs["items"]} == set(comp.loc[comp.antecedent == a, "consequent"])
    assert all(i["reason"].startswith("bought with") for i in xs["items"])
    pair = env["log"].truth.premium_pairs.iloc[0]
    up = svc.post("/up_sell", {"item_id": pair["cheap"], "n": 50, "experiment": "solo",
                               "customer_id": cust(env)}).json()
    assert pair["premium"] in [i["item_id"] for i in up["items"]]
    assert up["strategy"] == "up_sell+personalised"


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/recommend", {"customer_id": 1, "n": 0}, "n"),
        ("/recommend", {"customer_id": 1, "n": 1001}, "n"),
        ("/recommend", {"customer_id": 1, "n": "ten"}, "n"),
        ("/recommend", {"customer_id": {"a": 1}}, "customer_id"),
        ("/recommend", {"filters": {"price_min": -1}}, "price_min"),
        ("/recommend", {"filters": {"colour": "red"}}, "colour"),
        ("/recommend", {"experiment": "nope"}, "experiment"),
        ("/similar_items", {"item_id": "ghost"}, "item_id"),
        ("/cross_sell", {"item_ids": []}, "item_ids"),
        ("/recommend_batch", {"customer_ids": [1], "experiment": "ileave"}, "experiment"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(svc, path, body, field):
    r = svc.post(path, body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text


def test_malformed_json_and_service_keeps_serving(svc, env):
    r = svc.client.post("/recommend", content=b'{"customer_id": 1, "n": ',
                        headers={"content-type": "application/json"})
    assert r.status_code == 400 and "json" in r.text.lower()
    assert svc.post("/recommend", {"customer_id": cust(env), "n": 2}).status_code == 200
    assert svc.client.get("/readyz").status_code == 200
    assert "Traceback" not in svc.logs()


def test_variant_split_is_stable_and_weighted(svc, env):
    spec_name, spec = load_experiments(env["config"]).resolve("default")
    seen = {}
    cids = [cust(env, i) for i in range(120)]
    for c in cids:
        seen[c] = svc.post("/recommend", {"customer_id": c, "n": 1}).json()["variant"]
    assert all(seen[c] == assign(spec_name, spec, str(c)) for c in cids)
    share = sum(v == "control" for v in seen.values()) / len(seen)
    assert 0.35 < share < 0.65
    versions = {svc.post("/recommend", {"customer_id": c, "n": 1}).json()["model_version"]
                for c in cids[:30]}
    assert len(versions) == 2  # the two variants serve different models


def test_interleave_experiment(svc, env):
    r = svc.post("/recommend", {"customer_id": cust(env), "n": 8, "experiment": "ileave"})
    body = r.json()
    assert body["variant"] == "interleaved" and len(body["items"]) == 8
    teams = [i["variant"] for i in body["items"]]
    assert set(teams) <= {"control", "treatment"} and abs(
        teams.count("control") - teams.count("treatment")) <= 1
    df, _ = read_exposures(env["dir"] / "exposures.jsonl")
    rec = df[df["request_id"] == body["request_id"]].iloc[0]
    assert rec["teams"] == teams


def test_exposure_log_matches_responses(svc, env):
    bodies = [svc.post("/recommend", {"customer_id": cust(env, i), "n": 3}).json()
              for i in range(5)]
    bodies.append(svc.post("/cross_sell", {"item_ids": [env["art_a"].items.ids[0]],
                                           "experiment": "solo"}).json())
    df, torn = read_exposures(env["dir"] / "exposures.jsonl")
    assert torn is None
    by_id = df.set_index("request_id")
    for i, b in enumerate(bodies):
        rec = by_id.loc[b["request_id"]]
        assert rec["items"] == [it["item_id"] for it in b["items"]]
        assert rec["variant"] == b["variant"] and rec["model_version"] == b["model_version"]
        assert rec["strategy"] == b["strategy"] and rec["experiment"] == b["experiment"]
        if i < 5:
            raw = cust(env, i)
            assert rec["customer_key"] == customer_key(SECRET.encode(), raw)
            assert rec["customer_key"] != str(raw) and len(rec["customer_key"]) == 32
    raw_ids = {json.loads(line).get("customer_id") for line in
               (env["dir"] / "exposures.jsonl").read_text().splitlines()}
    assert raw_ids == {None}  # the raw id is never written
    # /info counts this worker's group commits: records written, each fsync'd batch once
    ex = svc.client.get("/info").json()["exposure"]
    assert ex["records"] >= len(bodies) and 1 <= ex["commits"] <= ex["records"]


def test_customer_profile_from_tables_beside_the_model(svc, env):
    r = svc.post("/customer_profile", {"customer_id": cust(env, 2)})
    assert r.status_code == 200, r.text
    assert r.json()["profile"] == {"segment": "champion", "recency_days": None}
    missing = svc.post("/customer_profile", {"customer_id": cust(env, 50)})
    assert missing.status_code == 404 and "customer_id" in missing.text


def test_info_metrics_docs(svc):
    info = svc.client.get("/info").json()
    assert info["ready"] and len(info["models"]) == 3
    assert {"version", "n_items", "data"} <= set(info["models"][0])
    assert "path" not in info["models"][0]  # server paths only with the admin token
    admin = svc.client.get("/info", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert {"path", "uri"} <= set(admin["models"][0])
    m = svc.client.get("/metrics").text
    assert 'patron_requests_total{endpoint="recommend"' in m
    assert "patron_client_errors_total" in m
    assert svc.client.get("/").status_code == 200


def test_admin_reload_requires_token(svc):
    assert svc.post("/admin/reload", {}).status_code == 401
    bad = svc.post("/admin/reload", {}, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401


def test_reload_under_load_and_broken_model_keeps_old(svc, env):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = svc.post("/recommend", {"customer_id": cust(env), "experiment": "solo"}).json()
    broken = svc.post("/admin/reload", {"model_uri": str(env["dir"] / "broken"),
                                        "experiment": "solo"}, headers=auth)
    assert broken.status_code == 409 and "broken" in broken.text
    after = svc.post("/recommend", {"customer_id": cust(env), "experiment": "solo"}).json()
    assert after["model_version"] == before["model_version"] and after["items"] == before["items"]

    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer():
        import httpx

        with httpx.Client(base_url=svc.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/recommend", json={"customer_id": cust(env), "experiment": "solo"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    ok = svc.post("/admin/reload", {"model_uri": str(env["dir"] / "model_b"),
                                    "experiment": "solo"}, headers=auth)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert ok.status_code == 200, ok.text
    assert statuses and set(statuses) == {200}
    new = svc.post("/recommend", {"customer_id": cust(env), "experiment": "solo"}).json()
    assert new["model_version"] != before["model_version"]
    assert versions == {before["model_version"], new["model_version"]}


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("query,endpoint", [("customer_id={c}&n=4", "recommend"),
                                            ("item_id={i}&n=3", "cross_sell")])
def test_widget_renders_in_headless_chromium(svc, env, tmp_path, query, endpoint):
    url = f"{svc.url}/widget?" + query.format(c=cust(env), i=env["art_a"].items.ids[0])
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=10000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    dom = out.stdout
    assert 'class="patron-items"' in dom, out.stderr[-2000:]
    assert dom.count('class="patron-item"') >= 1
    assert 'data-loaded="error"' not in dom
