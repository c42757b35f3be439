"""`patron build`: a bento that carries the champion's artifact and serves with no registry."""

from __future__ import annotations

HELP = "build a BentoML bento with the champion (or --model) inside: it serves without a registry"

BUNDLED = "bundled_model"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="models:/patron@champion", metavar="URI|PATH",
                        help="what to pack: models:/NAME@alias, models:/NAME/N or an artifact "
                        "directory (default models:/patron@champion, from the project's store)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI "
                        "(default $MLFLOW_TRACKING_URI or the project's .patron/mlflow.db)")
    parser.epilog = ("example: patron build && bentoml serve patron:latest   (the bento's "
                     "PATRON_MODEL_URI points at the packed model; set it to models:/... to "
                     "resolve an alias at start-up instead)")


def run(args) -> int:
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import yaml

    from features.artifact import load_artifact
    from features.errors import PatronError
    from features.model_store import fetch_registered, resolve_local

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    if args.model.startswith("models:/"):
        path, info = fetch_registered(args.model)
        label = info.get("version", args.model)
    else:
        path = resolve_local(Path(args.model).resolve())
        label = str(path)
    load_artifact(path)  # refuse a damaged or foreign artifact before building
    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((root / "bentofile.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="patron-build-") as tmp:
        ctx = Path(tmp)
        for pkg in ("serving", "features"):
            shutil.copytree(root / pkg, ctx / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(path, ctx / BUNDLED)
        spec["include"] = [*spec.get("include", []), f"{BUNDLED}/**"]
        # the service serves bundled_model/ when PATRON_MODEL_URI is unset (bentoml serve of a
        # bento does not apply the bento's envs; a container does): drop the alias default
        spec["envs"] = [e for e in spec.get("envs", []) if e.get("name") != "PATRON_MODEL_URI"]
        spec.setdefault("labels", {})["model"] = str(label).replace("/", "-").replace("@", "-")[:60]
        (ctx / "bentofile.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        bentoml = Path(sys.executable).with_name("bentoml")
        r = subprocess.run([str(bentoml), "build"], cwd=ctx, capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            raise PatronError(f"bentoml build failed: {out.strip().splitlines()[-1] if out.strip() else r.returncode}")
    tag = next((w.strip('"().') for line in out.splitlines() if "Successfully built Bento" in line
                for w in line.split() if w.startswith(("tag=", "patron:"))), None)
    print(f"built {tag or 'patron'} with {label} inside; serve it with: bentoml serve "
          f"{(tag or 'patron:latest').removeprefix('tag=')}")
    return 0
