"""benchmarks/replay_asha.py: Ray's ASHA replayed on the curves of trials that ran to the end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dcml_core.metric_names import EPOCH, OBJECTIVE

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "replay_asha.py"


@pytest.fixture(scope="module")
def replay_asha():
    spec = importlib.util.spec_from_file_location("replay_asha", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_sweep(root: Path, curves: dict[int, list[float]]) -> Path:
    """A sweep folder as the sweep writes it: trial_<id>_<n> folders with one result line per epoch (1 s each)."""
    for index, values in curves.items():
        folder = root / f"trial_abc12_{index:05d}"  # tune/tuner.py trial_dirname
        folder.mkdir(parents=True)
        rows = [{EPOCH: e, OBJECTIVE: v, "time/train_s": 0.5, "time/eval_s": 0.5} for e, v in enumerate(values)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_replay_stops_what_asha_stops_and_prices_it(replay_asha, tmp_path) -> None:
    # epochs 0..4; grace 1, factor 2, max_t 4 -> rungs at epochs 1 and 2
    curves = replay_asha.read_curves(_write_sweep(tmp_path, {
        0: [0.1, 0.30, 0.40, 0.45, 0.50],
        1: [0.1, 0.20, 0.30, 0.60, 0.70],  # below trial 0's 0.30 at rung 1: stopped there, though it ends best
        2: [0.1, 0.35, 0.45, 0.50, 0.55],  # above both rungs' cutoffs: runs to the end
    }))  # fmt: skip
    ran = replay_asha.replay(curves, [0, 1, 2], grace=1, factor=2, max_t=4)
    assert ran == {0: 4, 1: 1, 2: 4}
    device, gap = replay_asha.outcome(curves, ran)
    assert device == pytest.approx((5 + 2 + 5) / 15)  # epoch 0 counts as device time
    assert gap == pytest.approx(100 * (0.70 - 0.55))  # the best configuration was lost
    # in another order the late bloomer comes first and is kept: nothing lost
    ran = replay_asha.replay(curves, [1, 0, 2], grace=1, factor=2, max_t=4)
    assert ran[1] == 4 and replay_asha.outcome(curves, ran)[1] == pytest.approx(0.0)


def test_replay_refuses_a_folder_without_trials(replay_asha, tmp_path) -> None:
    with pytest.raises(SystemExit, match="no trial folders with result.json"):
        replay_asha.read_curves(tmp_path)
