"""The starting network's scores (epoch 0), evaluated once per sweep for the trials that share it.

Every trial reports its starting network's validation and test scores at epoch 0: the untrained point on the
demo, the ImageNet-pretrained point on the real data sets (the reference DML papers quote). Trials whose starting
networks are the same (same model, data, evaluation protocol, seed and device type: the network is built right
after seeding, before anything else draws random numbers) reuse the scores the first of them stored in the
sweep's storage (``<sweep>/start_eval/<key>.json``, shared by every node), so a space that samples only
optimisation settings evaluates its start once. A file that cannot be read is a miss: the trial evaluates.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

from dcml_core.engine import Engine

FOLDER = "start_eval"
_SHARED_GROUPS = ("model", "data", "eval")  # with the seed and the device type: what the start depends on


def start_key(engine: Engine) -> str:
    """Hash of everything the starting network and its evaluation depend on."""
    cfg = engine.cfg.to_dict()
    parts = {**{g: cfg[g] for g in _SHARED_GROUPS}, "seed": cfg["seed"], "device": engine.device.type}
    parts.update({k: cfg[k] for k in ("amp", "channels_last")})
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def start_scores(engine: Engine, folder: tuple[Any, str]) -> dict[str, float]:
    """``val`` and ``test`` scores of ``engine``'s network before its first step, from the sweep's store when a
    trial with the same starting network put them there (``folder``: the trial's (file system, path))."""
    fs, trial_path = folder
    path = posixpath.join(posixpath.dirname(trial_path.rstrip("/")), FOLDER, f"{start_key(engine)}.json")
    try:
        with fs.open_input_stream(path) as stream:
            scores = json.loads(stream.read().decode())
        return {**scores, "val/eval_time_s": 0.0, "test/eval_time_s": 0.0}  # this trial spent no time on it
    except (OSError, ValueError):
        pass
    scores = {**engine.evaluate("val"), **engine.evaluate("test")}
    try:
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:  # trials of the same start write the same content
            out.write(json.dumps({k: v for k, v in scores.items() if not k.endswith("eval_time_s")}).encode())
    except OSError:
        pass  # not shared then; every trial of this start evaluates it
    return scores
