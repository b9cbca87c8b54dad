"""Data checks are paid once per machine: the image verification of a set of files runs in the first trial
only; a reused worker (same process) and a restarted one (new process) find its record; a changed file is
verified again, a bad file every time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import dcml_core.data.verified as verified
from dcml_core.config import ExperimentConfig
from dcml_core.data import Record
from dcml_core.data_bundle import prepare_data
from tests.test_tune_support import REPO, tiny_demo  # noqa: F401  (fixture)


@pytest.fixture()
def counted(monkeypatch) -> list[int]:
    """How many images ``verify_images`` opened, call by call."""
    calls: list[int] = []
    real = verified.verify_images

    def count(records, skip_bad=False):
        calls.append(len(records))
        return real(records, skip_bad=skip_bad)

    monkeypatch.setattr(verified, "verify_images", count)
    return calls


def _splits(root: Path) -> dict[str, list[Record]]:
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Record]] = {}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        out[split] = []
        for i in range(n):
            path = root / f"{split}_{i}.png"
            Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(path)
            out[split].append(Record(str(path), i % 2, f"c{i % 2}"))
    return out


def test_a_set_of_files_is_verified_once_then_again_when_a_file_changes(tmp_path, counted) -> None:
    splits, home = _splits(tmp_path / "data"), tmp_path / "cache"
    good, bad = verified.verify_splits(splits, skip_bad=False, home=home)
    assert counted == [4, 2, 3] and bad == [] and good == splits  # first trial: every image opened
    assert verified.verify_splits(splits, skip_bad=False, home=home) == (splits, [])
    assert counted == [4, 2, 3]  # the next trial (or a reused worker): nothing opened again
    os.utime(splits["val"][0].path, ns=(1, 1))  # touched: its stats changed, so the set is checked again
    verified.verify_splits(splits, skip_bad=False, home=home)
    assert counted == [4, 2, 3, 4, 2, 3]


def test_bad_files_are_never_recorded(tmp_path, counted) -> None:
    splits, home = _splits(tmp_path / "data"), tmp_path / "cache"
    Path(splits["test"][1].path).write_bytes(b"not an image")
    for _ in range(2):  # reported every time, never skipped by a record
        with pytest.raises(ValueError, match="1 of 3 images cannot be read"):
            verified.verify_splits(splits, skip_bad=False, home=home)
    with pytest.warns(UserWarning, match="skipping 1 of 3 unreadable images"):
        good, bad = verified.verify_splits(splits, skip_bad=True, home=home)
    assert bad == [splits["test"][1].path] and len(good["test"]) == 2
    assert counted == [4, 2, 3, 4, 2, 3, 4, 2, 3] and not (home / verified.FOLDER).exists()


def test_a_restarted_worker_does_not_verify_again(tmp_path, counted, monkeypatch, tiny_demo) -> None:  # noqa: F811
    monkeypatch.setenv("DCML_CACHE_HOME", str(tmp_path / "cache"))
    cfg = ExperimentConfig.from_dict({"data": {"dataset": "demo", "root": str(tiny_demo), "batch_size": 8,
                                               "samples_per_class": 2}, "eval": {"recall_ks": [1]}})  # fmt: skip
    first = prepare_data(cfg)
    assert sum(counted) == len(first.train) + len(first.val) + len(first.test)
    assert prepare_data(cfg) == first and len(counted) == 3  # the same process again: no image opened
    script = textwrap.dedent("""
        import json, sys
        import dcml_core.data.verified as v
        from dcml_core.config import ExperimentConfig
        from dcml_core.data_bundle import prepare_data
        calls = []
        real = v.verify_images
        v.verify_images = lambda records, skip_bad=False: (calls.append(len(records)), real(records, skip_bad))[1]
        bundle = prepare_data(ExperimentConfig.from_json(sys.argv[1]))
        print(json.dumps([calls, len(bundle.train)]))
    """)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script, cfg.to_json()], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout  # fmt: skip
    assert out.strip() == f"[[], {len(first.train)}]"  # a new process on the same machine: nothing opened
