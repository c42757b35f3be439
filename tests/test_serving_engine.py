"""Serving logic without HTTP: engine, filters, variants, interleaving, exposure log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from features import scoring
from serving.engine import Engine
from serving.exposure import ExposureLog, ExposureLogError, customer_key, read_exposures
from serving.interleave import team_draft
from serving.loader import ModelLoadError, load_engine, resolve_local
from serving.schemas import Filters
from serving.variants import (
    ExperimentConfigError,
    ExperimentSpec,
    VariantSpec,
    assign,
    load_experiments,
)
from tests.serving_helpers import build_artifact


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving-engine") / "model"
    art, log = build_artifact(path, seed=1)
    return path, art, log


@pytest.fixture(scope="module")
def engine(built):
    path, _, _ = built
    return load_engine(str(path)).engine


def ids(engine: Engine, res) -> list:
    return engine.item_ids[res.items].tolist()


def test_known_customer_matches_scoring_and_excludes_bought(engine, built):
    _, art, _ = built
    row = 5
    cid = art.customers.ids[row].item()
    res = engine.recommend(cid, 10)
    assert res.strategy == "personalised" and len(res.items) == 10
    full = scoring.score(art, np.array([row]))
    idx, _ = scoring.top_k(full, 10, exclude=art.history[[row]])
    assert res.items.tolist() == idx[0].tolist()
    bought = set(art.history[row].indices.tolist())
    assert not bought & set(res.items.tolist())
    assert all(r and r.startswith("similar to ") for r in res.reasons)
    kept = engine.recommend(cid, 10, exclude_bought=False)
    assert bought & set(kept.items.tolist())


def test_fold_in_cache_equals_scoring_fold_in(engine, built):
    _, art, _ = built
    hist = sp.csr_matrix(art.history[[3, 7, 11]])
    np.testing.assert_allclose(engine.fold_in(hist), scoring.fold_in(art, hist), rtol=1e-4,
                               atol=1e-5)


def test_unknown_customer_with_context_is_folded_in(engine, built):
    _, art, log = built
    machine = log.truth.complements["antecedent"].iloc[0]
    res = engine.recommend("nobody", 5, context_items=[machine, "NOPE"])
    assert res.strategy == "folded_in"
    assert machine not in ids(engine, res)
    assert any("NOPE" in w for w in res.warnings)
    assert any(r and r.startswith("bought with") for r in res.reasons)
    hist = sp.csr_matrix(([1.0], ([0], [art.items.index_of([machine])[0]])),
                         shape=(1, art.n_items))
    want = scoring.score(art, np.array([-1]), hist)[0]
    want[art.items.index_of([machine])] = -np.inf
    assert res.items[0] == int(np.argmax(want))


def test_unknown_customer_without_context_gets_popularity(engine):
    res = engine.recommend(None, 4)
    assert res.strategy == "popularity" and res.reasons == ["popular"] * 4
    assert res.items.tolist() == np.argsort(-engine.popularity, kind="stable")[:4].tolist()


def test_filters_categories_price_allow_deny(engine, built):
    _, art, log = built
    cid = art.customers.ids[0].item()
    cats = log.truth.items.set_index("item_id")
    res = engine.recommend(cid, 20, filters=Filters(categories_in=["coffee", "dairy"]))
    assert set(cats.loc[ids(engine, res), "category"]) <= {"coffee", "dairy"}
    res = engine.recommend(cid, 50, filters=Filters(categories_out=["coffee"]))
    assert "coffee" not in set(cats.loc[ids(engine, res), "category"])
    res = engine.recommend(cid, 50, filters=Filters(price_min=5, price_max=10))
    prices = engine.prices[res.items]
    assert len(res.items) and ((prices >= 5) & (prices <= 10)).all()
    allow = art.items.ids[:6].tolist()
    res = engine.recommend(cid, 50, exclude_bought=False,
                           filters=Filters(allow_items=allow + ["ghost"]))
    assert set(ids(engine, res)) <= set(allow) and any("ghost" in w for w in res.warnings)
    top = ids(engine, engine.recommend(cid, 3))
    res = engine.recommend(cid, 3, filters=Filters(deny_items=top))
    assert not set(top) & set(ids(engine, res))
    w = engine.recommend(cid, 3, filters=Filters(categories_in=["nope"]))
    assert len(w.items) == 0 and any("unknown categories" in x for x in w.warnings)


def test_cross_sell_gives_planted_complements_not_substitutes(engine, built):
    _, _, log = built
    comp = log.truth.complements
    cat = log.truth.items.set_index("item_id")
    hits = 0
    anchors = comp["antecedent"].unique()
    for a in anchors:
        res = engine.cross_sell([a], 3)
        got = ids(engine, res)
        want = set(comp.loc[comp["antecedent"] == a, "consequent"])
        hits += len(want & set(got[:2]))
        roles = cat.loc[got, "role"]
        same = cat.loc[got, "category"] == cat.loc[a, "category"]
        # nothing from the anchor's own category unless it is a planted complement
        assert set(roles[same]) <= {"complement"}, (a, got)
        assert all(r.startswith("bought with") for r in res.reasons)
    assert hits >= 0.9 * 2 * len(anchors)
    subs = engine.cross_sell([anchors[0]], 50, include_substitutes=True)
    assert len(subs.items) >= len(engine.cross_sell([anchors[0]], 50).items)


def test_cross_sell_personalised_and_basket(engine, built):
    _, art, log = built
    comp = log.truth.complements
    a, b = comp["antecedent"].unique()[:2]
    res = engine.cross_sell([a, b, "ghost"], 4, customer_id=art.customers.ids[0].item())
    assert res.strategy == "cross_sell+personalised"
    got = set(ids(engine, res))
    assert not {a, b} & got
    assert got & set(comp.loc[comp["antecedent"].isin([a, b]), "consequent"])
    with pytest.raises(KeyError, match="item_ids"):
        engine.cross_sell(["ghost"], 3)


def test_up_sell_same_category_higher_tier_never_cheaper(engine, built):
    _, art, log = built
    pairs = log.truth.premium_pairs
    found = 0
    for cheap, premium in zip(pairs["cheap"], pairs["premium"], strict=True):
        i = art.items.index_of([cheap])[0]
        res = engine.up_sell(cheap, 50, customer_id=art.customers.ids[1].item())
        assert len(res.items)
        assert (engine.prices[res.items] > engine.prices[i]).all()
        assert (engine.tiers[res.items] > engine.tiers[i]).all()
        assert (engine.category_codes[res.items] == engine.category_codes[i]).all()
        found += premium in ids(engine, res)
        assert res.reasons[0].startswith("upgrade of")
    assert found == len(pairs)  # the planted pricier version is always a candidate
    dearest = int(np.nanargmax(np.where(engine.category_codes == engine.category_codes[0],
                                        engine.prices, np.nan)))
    none = engine.up_sell(art.items.ids[dearest], 5)
    assert len(none.items) == 0  # nothing dearer: no up-sell rather than a cheaper item


def test_similar_and_batch(engine, built):
    _, art, _ = built
    item = art.items.ids[10]
    res = engine.similar(item, 5)
    assert len(res.items) == 5 and 10 not in res.items.tolist()
    with pytest.raises(KeyError, match="item_id"):
        engine.similar("ghost", 5)
    cids = [art.customers.ids[i].item() for i in (0, 1, 2)] + [10**9]
    results, warnings = engine.recommend_batch(cids, 5)
    for c, r in zip(cids[:3], results[:3], strict=True):
        assert r.items.tolist() == engine.recommend(c, 5).items.tolist()
    assert results[3].strategy == "popularity" and warnings


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_batch_lists_equal_single_lists(built, monkeypatch, cache):
    """recommend_batch gives each customer recommend's list: items, scores, reasons and
    strategy, cached or scored in the one matrix product, with filters, and for unknown
    customers the popularity list."""
    path, art, _ = built
    monkeypatch.setenv("PATRON_TOPK_CACHE", cache)
    engine = load_engine(str(path)).engine
    cids = [c.item() for c in art.customers.ids[::3]] + ["nobody"]
    cases = [dict(n=10), dict(n=10, exclude_bought=False), dict(n=150),
             dict(n=5, filters=Filters(categories_in=["coffee"]))]
    for kw in cases:
        batch, _ = engine.recommend_batch(cids, **kw)
        for c, b in zip(cids, batch, strict=True):
            a = engine.recommend(c, **kw)
            assert b.items.tolist() == a.items.tolist(), (c, kw)
            np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5, atol=1e-6)  # gemm vs gemv: last-bit BLAS differences
            assert (b.reasons, b.strategy) == (a.reasons, a.strategy), (c, kw)


def test_numeric_ids_accept_strings(engine, built):
    _, art, _ = built
    cid = art.customers.ids[0].item()
    assert engine.customer_row(str(cid)) == engine.customer_row(cid) == 0
    assert engine.customer_row("x") == -1 and engine.customer_row(True) == -1


def test_loader_errors_name_the_path(tmp_path, built):
    with pytest.raises(ModelLoadError, match="not a Patron model artifact"):
        load_engine(str(tmp_path))
    path, _, _ = built
    mlflow_layout = tmp_path / "mlmodel" / "artifacts"
    mlflow_layout.mkdir(parents=True)
    os.symlink(path, mlflow_layout / "patron_model")
    assert resolve_local(tmp_path / "mlmodel") == mlflow_layout / "patron_model"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="broken"):
        load_engine(str(broken))


# ---- variants --------------------------------------------------------------------------
def test_variant_assignment_is_stable_and_follows_weights():
    spec = ExperimentSpec(salt="s1", variants={
        "a": VariantSpec(model="m1", weight=0.2), "b": VariantSpec(model="m2", weight=0.8)})
    first = [assign("e", spec, str(c)) for c in range(20000)]
    assert first == [assign("e", spec, str(c)) for c in range(20000)]
    share = first.count("a") / len(first)
    assert 0.18 < share < 0.22
    other = ExperimentSpec(salt="s2", variants=spec.variants)
    moved = sum(x != assign("e", other, str(c)) for c, x in enumerate(first))
    assert moved > 1000  # a new salt reshuffles


def test_experiment_config_errors_name_the_field(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("experiments:\n  x:\n    type: interleave\n    variants:\n"
                 "      a: {model: m1}\n")
    with pytest.raises(ExperimentConfigError, match="exp.yaml.*two variants"):
        load_experiments(p)
    p.write_text("experiments:\n  x:\n    variants:\n      a: {model: m1, wieght: 2}\n")
    with pytest.raises(ExperimentConfigError, match="experiments.x.variants.a.wieght"):
        load_experiments(p)
    j = tmp_path / "exp.json"
    j.write_text(json.dumps({"experiments": {"x": {"variants": {"a": {"model": "m"}}}}}))
    cfg = load_experiments(j)
    assert cfg.resolve("default")[0] == "x"
    with pytest.raises(KeyError, match="unknown experiment"):
        cfg.resolve("nope")


def test_team_draft_interleaving():
    a, b = list("abcdefgh"), list("bxaycz")
    for seed in range(50):
        items, teams = team_draft(a, b, 8, seed=seed, names=("A", "B"))
        assert len(items) == len(set(items)) == 8
        assert abs(teams.count("A") - teams.count("B")) <= 1
        for team, src in (("A", a), ("B", b)):
            got = [i for i, t in zip(items, teams, strict=True) if t == team]
            assert all(i in src for i in got)
            pos = [src.index(i) for i in got]
            assert pos == sorted(pos)  # each team adds its own items in its own order
    assert team_draft(a, b, 8, seed="r1") == team_draft(a, b, 8, seed="r1")
    assert team_draft([], list("xy"), 5) == (["x", "y"], ["B", "B"])


# ---- exposure log ----------------------------------------------------------------------
def test_exposure_log_records_keys_and_group_commit(tmp_path):
    import threading

    log = ExposureLog(tmp_path / "exp.jsonl", secret=b"k")
    assert log.key(42) == customer_key(b"k", 42) and "42" not in log.key(42)
    threads = [
        threading.Thread(target=log.write, args=({"ts": 1.0, "request_id": str(i),
                                                  "customer_key": log.key(i), "items": [i]},))
        for i in range(200)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df, torn = read_exposures(tmp_path / "exp.jsonl")
    assert torn is None and len(df) == 200 and log.records == 200
    assert log.batches <= 200
    assert sorted(df["request_id"].astype(int)) == list(range(200))
    log.close()
    with pytest.raises(ExposureLogError):
        log.write({"x": 1})


def test_exposure_secret_file_is_shared_and_stable(tmp_path, monkeypatch):
    monkeypatch.delenv("PATRON_EXPOSURE_SECRET", raising=False)
    monkeypatch.setenv("PATRON_KEY_FILE", str(tmp_path / "secrets" / "exposure.keys"))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "e.jsonl.key").write_text("legacy-secret\n")  # an older Patron's
    a = ExposureLog(tmp_path / "logs" / "e.jsonl")
    assert a.secret == b"legacy-secret"  # moved, not replaced: keys stay stable
    a = ExposureLog(tmp_path / "e.jsonl")
    b = ExposureLog(tmp_path / "e.jsonl")
    assert a.secret == b.secret and a.key("c1") == b.key("c1")
    from serving.keys import key_file  # the secret is kept outside the log's folder
    assert not (tmp_path / "e.jsonl.key").exists() and not (tmp_path / "logs" / "e.jsonl.key").exists()
    assert oct(key_file().stat().st_mode & 0o777) == "0o600"
    a.close()
    b.close()


def test_exposure_log_survives_a_crash_mid_write(tmp_path):
    """A process killed while appending leaves a torn line: read_exposures reports it,
    the next writer cuts it and appends cleanly."""
    path = tmp_path / "crash.jsonl"
    code = textwrap.dedent(f"""
        import os
        from serving.exposure import ExposureLog
        log = ExposureLog({str(path)!r}, secret=b"k")
        for i in range(5):
            log.write({{"ts": 1.0, "request_id": str(i), "items": [i]}})
        os.write(log._fd, b'{{"ts": 2.0, "request_id": "torn", "ite')
        os._exit(9)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    rc = subprocess.run([sys.executable, "-c", code], env=env).returncode
    assert rc == 9
    df, torn = read_exposures(path)
    assert len(df) == 5 and torn is not None
    assert torn["line"] == 6 and torn["text"].startswith('{"ts": 2.0')
    log = ExposureLog(path, secret=b"k")
    log.write({"ts": 3.0, "request_id": "after", "items": []})
    log.close()
    df, torn = read_exposures(path)
    assert torn is None and df["request_id"].tolist()[-1] == "after" and len(df) == 6
    assert list(tmp_path.glob("crash.jsonl.torn-*"))
    path.write_bytes(path.read_bytes().replace(b'"after"', b'"aft'))  # a bad middle line
    with path.open("ab") as f:
        f.write(b'{"ts": 4.0}\n')
    df, torn = read_exposures(path)  # read past it, with a count (issue 14)
    assert torn["line"] == 6 and torn["bad_lines"] == 1 and len(df) == 6
    assert df["ts"].tolist()[-1] == 4.0


def test_torn_tail_over_a_mebibyte_is_repaired(tmp_path):
    """A torn tail longer than the repair's read-back step (1 MiB) is cut too, so new
    records never land after it (issue 14, item 7)."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"ts": 1.0, "request_id": "a", "items": []}\n' + b'{"ts": 2.0, "x": "'
                     + b"y" * (3 << 20))
    log = ExposureLog(path, secret=b"k")
    log.write({"ts": 3.0, "request_id": "after", "items": []})
    log.close()
    df, torn = read_exposures(path)
    assert torn is None and df["request_id"].tolist() == ["a", "after"]
    kept = list(tmp_path.glob("big.jsonl.torn-*"))
    assert len(kept) == 1 and kept[0].stat().st_size > 3 << 20


def test_reload_signal_reaches_other_workers(tmp_path, built):
    """Two workers' states share a signal file: a reload in one is followed by the other."""
    import shutil
    import time

    from serving.state import ServingState, Settings

    path, _, _ = built
    shutil.copytree(path, tmp_path / "m1")
    shutil.copytree(path, tmp_path / "m2")
    kw = dict(model_uri=str(tmp_path / "m1"), run_dir=str(tmp_path / "run"), admin_token="t",
              workers=2)
    a = ServingState(Settings(**kw))
    b = ServingState(Settings(**kw))
    assert a.load()[1] == [] and b.load()[1] == []
    b.watch_reloads(interval=0.05)
    old = b.engines[str(tmp_path / "m1")]
    a.overrides["default/default"] = str(tmp_path / "m2")
    ok, failed = a.load()
    assert ok and not failed
    t0 = time.monotonic()
    workers = a.publish_reload(timeout=10)  # returns once b serves the new model
    assert workers == {"expected": 2, "ok": 2, "failed": 0, "waiting": 0}
    assert time.monotonic() - t0 < 10
    assert b.config.experiments["default"].variants["default"].model == str(tmp_path / "m2")
    assert b.engines[str(tmp_path / "m1")] is old  # the old engine is kept, not half-swapped


@pytest.mark.parametrize("extra", [200, 3])
def test_topk_cache_gives_the_exact_full_ranking(built, monkeypatch, extra):
    """Cached lists equal full scoring, also when the cache runs short (extra=3: the
    request falls back to scoring every item)."""
    import serving.engine

    path, art, _ = built
    monkeypatch.setattr(serving.engine, "TOPK_EXTRA", extra)
    cached = load_engine(str(path)).engine
    monkeypatch.setenv("PATRON_TOPK_CACHE", "off")
    full = load_engine(str(path)).engine
    assert cached._topk is not None and full._topk is None
    if extra == 3:
        assert len(cached._topk[1]) < art.n_customers * art.n_items
    cases = [dict(n=10), dict(n=10, exclude_bought=False), dict(n=150),
             dict(n=5, filters=Filters(categories_in=["coffee"])),
             dict(n=5, filters=Filters(deny_items=art.items.ids[:50].tolist()))]
    for row in range(0, art.n_customers, 7):
        cid = art.customers.ids[row].item()
        for kw in cases:
            a, b = cached.recommend(cid, **kw), full.recommend(cid, **kw)
            assert a.items.tolist() == b.items.tolist(), (row, kw)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)  # gemm vs gemv: last-bit BLAS differences
            assert a.reasons == b.reasons, (row, kw)  # reasons precomputed with the cache
