#!/usr/bin/env python3
"""Set up Patron and run a job, with nothing but Python 3.11-3.13 and the package registries.

    python3.11 dev.py demo     # create .venv, install requirements.lock, run `patron demo`
    python3.11 dev.py test     # the same plus the Spark extra (requirements-spark.lock), then
                               # lint + the tests
    python3.11 dev.py setup    # only the set-up (add --spark for the Spark extra)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCK = ROOT / "requirements.lock"
SPARK_LOCK = ROOT / "requirements-spark.lock"  # optional engine: ~480 MB, built from source


def sh(*cmd: str | os.PathLike, env: dict | None = None, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    if check and rc != 0:
        sys.exit(rc)
    return rc


def setup(spark: bool = False) -> None:
    if not (3, 11) <= sys.version_info[:2] <= (3, 13):
        sys.exit(f"Patron needs Python 3.11 to 3.13 (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        sh(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".patron-lock"
    want = LOCK.read_text() + (ROOT / "pyproject.toml").read_text()
    have = stamp.read_text() if stamp.exists() else ""
    spark_lock = SPARK_LOCK.read_text()
    if have in (want, want + spark_lock) and (not spark or have == want + spark_lock):
        return
    if not (BIN / "uv").exists():
        sh(BIN / "python", "-m", "pip", "install", "--quiet", "uv==0.13.9")
    locks = ["-r", LOCK] + (["-r", SPARK_LOCK] if spark else [])
    sh(BIN / "uv", "pip", "install", "--python", BIN / "python", *locks)
    sh(BIN / "uv", "pip", "install", "--python", BIN / "python", "--no-deps", "-e", ROOT)
    stamp.write_text(want + (spark_lock if spark else ""))


def test_env() -> dict:
    env = dict(os.environ)
    tmp = Path(tempfile.mkdtemp(prefix="patron-test-"))
    env.setdefault("BENTOML_HOME", str(tmp / "bentoml"))
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def ensure_chromium() -> None:
    """The widget test needs Debian's chromium; install it where we can (CI runs as root)."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    subprocess.call(["apt-get", "update", "-qq"])
    subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"])


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "help"
    if cmd == "setup":
        setup(spark="--spark" in argv[1:])
        return 0
    if cmd == "demo":
        setup()
        return sh(BIN / "patron", "demo", *argv[1:], check=False)
    if cmd == "test":
        setup(spark=True)  # CI tests the Spark engine too
        ensure_chromium()
        env = test_env()
        sh(BIN / "ruff", "check", ".", env=env)
        sh(BIN / "lint-imports", env=env)
        return sh(BIN / "python", "-m", "pytest", "-q", *argv[1:], env=env, check=False)
    print(__doc__)
    return 0 if cmd in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
