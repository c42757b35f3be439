"""Customer tables in the model artifact, /customer_profile and stage-aware recommend.

The artifact is built by the training pipeline (``train_model`` -> ``attach_extras``) on a
synthetic log; the service is the real one (``bentoml serve``) on 127.0.0.1.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from features.artifact import FORMAT_VERSION, ArtifactError, ModelArtifact, load_artifact
from features.customers import build_customer_tables, customer_profile
from features.synthetic import generate_purchases
from serving.engine import Engine
from serving.profiles import profile_for
from tests.serving_helpers import LiveService
from training.pipeline import REMINDERS_KEPT, train_model

SLEEPING = ("S2", "S3")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("profile")
    purchases = generate_purchases(n_customers=300, n_items=120, seed=3).purchases
    res = train_model(purchases, "als", {"factors": 16, "iterations": 8})
    art = res.model.fitted
    art.save(d / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = build_customer_tables(purchases)
    return {"dir": d, "art": art, "purchases": purchases, "expected": expected}


def _sleeping_customer(art: ModelArtifact):
    """A half-asleep / sleeping customer with favourites the model knows."""
    fav = art.tables["favourites"]
    known = fav[art.customers.contains(fav["customer_id"].to_numpy())]
    return known["customer_id"].value_counts().index[0].item()


def _active_customer(art: ModelArtifact):
    c = art.tables["customers"]
    return c.loc[c["nes_stage"] == "E0", "customer_id"].iloc[0].item()


# ---- artifact --------------------------------------------------------------------------
def test_pipeline_attaches_customer_tables(built):
    art, exp = built["art"], built["expected"]
    assert set(art.tables) == {"customers", "reminders", "favourites"}
    pd.testing.assert_frame_equal(art.tables["customers"], exp.customers)
    rem = art.tables["reminders"]
    assert rem["reminder_rank"].max() <= REMINDERS_KEPT and len(rem) > 0
    stages = exp.customers.set_index("customer_id")["nes_stage"]
    fav = art.tables["favourites"]
    assert len(fav) and stages.loc[fav["customer_id"].unique()].isin(SLEEPING).all()
    meta = art.metadata["customer_tables"]
    assert meta["reference_date"] == str(exp.reference_date.date())
    assert meta["rows"]["customers"] == len(exp.customers)


def test_artifact_tables_round_trip(built):
    loaded = load_artifact(built["dir"] / "model")
    assert sorted(loaded.tables) == ["customers", "favourites", "reminders"]
    for name, table in built["art"].tables.items():
        pd.testing.assert_frame_equal(loaded.tables[name], table, check_dtype=True)
    manifest = json.loads((built["dir"] / "model" / "manifest.json").read_text())
    assert manifest["tables"] == ["customers", "favourites", "reminders"]
    assert manifest["format_version"] == FORMAT_VERSION


def test_artifact_without_tables_still_loads(built, tmp_path):
    art = built["art"]
    bare = ModelArtifact(kind=art.kind, model_name=art.model_name, customers=art.customers,
                         items=art.items, arrays=art.arrays, history=art.history,
                         params=art.params, item_table=art.item_table)
    bare.save(tmp_path / "bare")
    mpath = tmp_path / "bare" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    assert manifest["tables"] == []
    del manifest["tables"]  # as an artifact written before tables existed
    mpath.write_text(json.dumps(manifest))
    loaded = load_artifact(tmp_path / "bare")
    assert loaded.tables == {}
    engine = Engine(loaded)
    assert engine.profiles is None and engine.stage_of(0) is None
    with pytest.raises(LookupError, match="no customer tables"):
        profile_for(engine, art.customers.ids[0].item())
    res = engine.recommend(_sleeping_customer(art), 10)
    assert res.strategy == "personalised"


def test_artifact_table_errors(built, tmp_path):
    art = built["art"]
    with pytest.raises(ArtifactError, match="table name"):
        ModelArtifact(kind=art.kind, model_name="x", customers=art.customers, items=art.items,
                      arrays=art.arrays, history=art.history, tables={"items": pd.DataFrame()})
    bad = ModelArtifact(kind=art.kind, model_name="x", customers=art.customers, items=art.items,
                        arrays=art.arrays, history=art.history,
                        tables={"customers": art.tables["customers"]})
    bad.save(tmp_path / "m")
    (tmp_path / "m" / "customers.parquet").unlink()
    with pytest.raises(ArtifactError, match="customers.parquet is missing"):
        load_artifact(tmp_path / "m")
    mpath = tmp_path / "m" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["tables"] = ["../../etc/passwd"]
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="table name"):
        load_artifact(tmp_path / "m")


# ---- engine: stage-aware recommend ----------------------------------------------------
def test_winback_leads_with_favourites(built):
    art = built["art"]
    engine = Engine(load_artifact(built["dir"] / "model"))
    cid = _sleeping_customer(art)
    row = engine.customer_row(cid)
    assert engine.stage_of(row) in SLEEPING
    fav = art.tables["favourites"]
    favs = fav[fav["customer_id"] == cid].sort_values("offer_rank")["item_id"].tolist()
    res = engine.recommend(cid, 10)
    ids = engine.item_ids[res.items].tolist()
    m = min(5, len(favs))
    assert res.strategy == "winback"
    assert ids[:m] == favs[:m] and res.reasons[:m] == ["you used to buy this"] * m
    assert len(ids) == 10 and len(set(ids)) == 10
    bought = set(engine.item_ids[engine.history[row].indices].tolist())
    assert not set(ids[m:]) & bought  # exclude_bought still holds for the model's part
    plain = engine.recommend(cid, 10, stage_aware=False)
    assert plain.strategy == "personalised" and not set(engine.item_ids[plain.items]) & bought
    # recommend_batch gives the same lists, stage-aware or not
    (b,), _ = engine.recommend_batch([cid], 10)
    assert (b.strategy, b.items.tolist(), b.reasons) == ("winback", res.items.tolist(), res.reasons)
    (b,), _ = engine.recommend_batch([cid], 10, stage_aware=False)
    assert (b.strategy, b.items.tolist()) == ("personalised", plain.items.tolist())
    # business filters apply to the favourites too
    from serving.schemas import Filters

    denied = engine.recommend(cid, 10, filters=Filters(deny_items=[favs[0]]))
    assert favs[0] not in engine.item_ids[denied.items].tolist()
    active = engine.recommend(_active_customer(art), 10)
    assert active.strategy == "personalised"


# ---- live service ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def svc(built):
    d = built["dir"]
    s = LiveService({"PATRON_MODEL_URI": str(d / "model"), "BENTOML_HOME": str(d / "bentoml")}, d)
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.mark.slow
def test_customer_profile_endpoint(svc, built):
    exp = built["expected"]
    cid = _sleeping_customer(built["art"])
    r = svc.post("/customer_profile", {"customer_id": str(cid), "max_items": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    want = customer_profile(cid, exp.customers, exp.reminders, max_items=3)
    want["as_of"] = str(exp.reference_date.date())
    assert body["profile"] == json.loads(json.dumps(want))
    p = body["profile"]
    assert p["known"] and p["nes"]["stage"] in SLEEPING and p["value_segment_zh"]
    assert {"r_score", "f_score", "m_score", "rfm_code"} <= set(p["rfm"])
    row = exp.customers.set_index("customer_id").loc[cid]
    assert p["rfm"]["r_score"] == int(row["r_score"]) and p["segment"] == row["segment"]
    # a customer with items due: they come back, at most max_items, best first
    due_c = exp.reminders["customer_id"].value_counts().index[0].item()
    due = svc.post("/customer_profile", {"customer_id": due_c, "max_items": 2}).json()
    assert len(due["profile"]["due_items"]) == 2
    top = exp.reminders[exp.reminders["customer_id"] == due_c].sort_values("reminder_rank")
    assert [d["item_id"] for d in due["profile"]["due_items"]] == top["item_id"].head(2).tolist()


@pytest.mark.slow
def test_customer_profile_unknown_and_bad_requests(svc):
    unknown = svc.post("/customer_profile", {"customer_id": 987654})
    assert unknown.status_code == 404 and "customer_id" in unknown.text
    assert svc.post("/customer_profile", {"customer_id": "not-a-number"}).status_code == 404
    for body in ({}, {"customer_id": [1, 2]}, {"customer_id": 1, "max_items": 0},
                 {"customer_id": 1, "max_items": 500}, {"customerid": 1}):
        r = svc.post("/customer_profile", body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)


@pytest.mark.slow
def test_recommend_winback_for_sleeping_customer(svc, built):
    art = built["art"]
    cid = _sleeping_customer(art)
    r = svc.post("/recommend", {"customer_id": cid, "n": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "winback"
    fav = art.tables["favourites"]
    favs = fav[fav["customer_id"] == cid].sort_values("offer_rank")["item_id"].tolist()
    assert [it["item_id"] for it in body["items"][:3]] == favs[:3]
    info = svc.client.get("/info").json()["models"][0]
    assert info["tables"] == ["customers", "favourites", "reminders"]
    assert info["customer_tables"]["reference_date"] == str(built["expected"].reference_date.date())
    off = svc.post("/recommend", {"customer_id": cid, "n": 6, "stage_aware": False}).json()
    assert off["strategy"] == "personalised"
    active = svc.post("/recommend", {"customer_id": _active_customer(art), "n": 6}).json()
    assert active["strategy"] == "personalised"
    assert np.isfinite([it["score"] for it in body["items"]]).all()
