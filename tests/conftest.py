"""Session-wide test settings: CPU only, no Ray token auth, no writes outside temporary folders."""

from __future__ import annotations

import os
import tempfile

# Spin-waiting OpenMP threads slow torch down 10-20x when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tests pass explicit tracking URIs; anything that falls back to the default writes here, never into the repo.
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="dcml-test-mlflow-"), "mlflow.db")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_demo_root(tmp_path_factory) -> str:
    """A small copy of the demo data (4 images per class, 32 px) in its own folder, built once per session."""
    from dcml_core.data import ensure_demo_dataset

    return str(ensure_demo_dataset(tmp_path_factory.mktemp("demo") / "tiny", n_per_class=4, image_size=32))


def tiny_config(root: str, method: str = "margin", **groups) -> dict:
    """A nested config for fast CPU tests: ResNet-18 at 32 px, small batches, 2 epochs."""
    four = ["discriminative", "selfsimilarity", "shared", "intra"]
    d = {
        "data": {"dataset": "demo", "root": root, "batch_size": 32, "num_workers": 0, "crop_size": 32,
                 "resize_size": 36},
        "model": {"method": method, "arch": "resnet18_frozen_normalize", "embed_dim": 16,
                  "features": ["discriminative"] if method == "margin" else four},
        "diva": {"moco_n_key_batches": 2},
        "optim": {"lr": 1e-3},
        "schedule": {"n_epochs": 2},
        "eval": {"metrics": ["recall", "nmi", "map_c"]},
        "seed": 3,
    }
    for key, value in groups.items():
        if isinstance(value, dict):
            d.setdefault(key, {}).update(value)
        else:
            d[key] = value
    return d
