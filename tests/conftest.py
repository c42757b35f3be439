"""Shared test set-up: quiet, private homes for BentoML/MLflow, one BLAS thread."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="patron-bentoml-"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# exposure-key secrets of test services: a private folder, never the user's ~/.config
os.environ.setdefault("PATRON_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="patron-keys-"),
                                                      "exposure.keys"))
os.environ.setdefault("MKL_NUM_THREADS", "1")
