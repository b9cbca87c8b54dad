"""Checkpoints written before the objective became a list of terms (format 1, commit ce29383) still resume exactly.

The format-1 layout below was recorded from real checkpoints of ce29383 for these two configurations (the two
where the optimiser groups also changed order). The test writes the current engine's state in that layout,
restores it and checks the run continues bit for bit like an uninterrupted one.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from dcml_core.checkpoint import save_checkpoint
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from tests.conftest import tiny_config

REGRESSORS = [f"decorrelation.regressors.{d}.{layer}.{p}" for d in ("selfsimilarity-discriminative",
              "shared-discriminative", "intra-discriminative") for layer in (0, 2) for p in ("weight", "bias")]
CASES = {
    "dcml_subembeddings": (
        {"method": "dcml", "model": {"compos_num": 8, "dis_on_subembeddings": True}, "diva": {}},
        ["pseudo_labels", "criteria.discriminative.beta", "criteria.shared.beta", "criteria.intra.beta",
         "criteria.subembeddings.beta", "queue.queue", "queue.filled", *REGRESSORS],
        124,  # key_encoder.key_model.* tensors
        [(1e-3, 64), (5e-4, 1), (5e-4, 1), (5e-4, 1), (5e-4, 1), (1e-5, 12)],  # (lr, tensors) per group
    ),
    "diva_dc_decorrelation": (
        {"method": "diva", "model": {"features": ["discriminative", "dc", "shared"]},
         "diva": {"dc_ncluster": 8, "dc_update_f": 1, "decorrelations": ["shared-discriminative"]}},
        ["pseudo_labels", "criteria.discriminative.beta", "criteria.shared.beta", "dc.classifier.weight",
         *REGRESSORS[4:8]],
        0,
        [(1e-3, 66), (5e-4, 1), (5e-4, 1), (1e-5, 4), (1e-2, 1)],
    ),
}
TERM_ATTRIBUTES = {"disc": "criteria.discriminative", "shared": "criteria.shared", "intra": "criteria.intra",
                   "subemb": "criteria.subembeddings", "sep": "decorrelation", "dc": "dc"}  # format-1 names


def _format1_key(key: str) -> str:
    _, term, rest = key.split(".", 2)  # terms.<term>.<rest>
    if term == "ssl" or rest == "pseudo_labels":
        return rest  # key_encoder.*, queue.*, pseudo_labels sat on the objective itself
    return f"{TERM_ATTRIBUTES[term]}.{rest.removeprefix('loss.')}"


def _as_format1(state: dict, groups: list[tuple[float, int]]) -> dict:
    old = {k: v for k, v in state.items() if k != "format"}
    old["queue_filled"] = True
    old["objective"] = {_format1_key(k): v for k, v in state["objective"].items()}
    old["objective"].setdefault("pseudo_labels", torch.empty(0, dtype=torch.long))  # always there in format 1
    saved, order = state["optimizer"]["param_groups"], []
    for lr, n in groups:  # the recorded group order, matched by (lr, size)
        order.append(next(i for i, g in enumerate(saved) if i not in order and (g["lr"], len(g["params"])) == (lr, n)))
    old["optimizer"] = {**state["optimizer"], "param_groups": [saved[i] for i in order]}
    return old


@pytest.mark.parametrize("case", CASES)
def test_format1_checkpoint_resumes_exactly(case, tiny_demo_root, tmp_path):
    settings, keys, key_encoder_tensors, groups = CASES[case]
    d = tiny_config(tiny_demo_root, settings["method"], model=settings["model"], diva=settings["diva"])
    cfg = ExperimentConfig.from_dict(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one rho for three directions (the reference default)
        straight = Engine(cfg, device="cpu")
        straight.train_epoch()
        old = _as_format1(straight.state_dict(), groups)
        encoder = [k for k in old["objective"] if k.startswith("key_encoder.key_model.")]
        assert sorted(k for k in old["objective"] if k not in encoder) == sorted(keys)
        assert len(encoder) == key_encoder_tensors
        save_checkpoint(tmp_path / "format1", old, cfg.to_json())
        straight.train_epoch()
        resumed = Engine.restore(tmp_path / "format1", device="cpu")
        assert resumed.epoch == 1
        resumed.train_epoch()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for (name, a), b in zip(straight.objective.state_dict().items(), resumed.objective.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.state_dict()["format"] == 2 and "queue_filled" not in resumed.state_dict()
