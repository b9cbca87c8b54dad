"""``tune/run.py`` rejects bad input with one line (exit 2) before Ray starts; ``--dry-run`` validates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.test_tune_support import REPO, free_port, short_tmp, sweep_env, tiny_demo  # noqa: F401  (fixtures)
from tune import run as run_module


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_module.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test writes under its own folder and uses its own MLflow store; Ray must never start here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("validation must fail before Ray starts"))


@pytest.fixture()
def cub_root(tmp_path, monkeypatch) -> Path:
    """A tiny CUB200 in the Revisiting folder layout (130 classes x 4 images: the 65 training classes hold out 13
    for validation and leave 52, enough for the 50 classes of a dcml_cub batch) and stand-in weights."""
    root = tmp_path / "data"
    for c in range(1, 131):
        folder = root / "cub200" / "images" / f"{c:03d}.Bird_{c}"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (24, 24), (20 * c % 256, 10 * i, c // 13)).save(folder / f"Bird_{c}_{i}.jpg")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet50-0676ba61.pth").write_bytes(b"")  # only its presence is checked before a trial starts
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return root


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--space NAME is required"),
        (["--space", "dcml_cbu"], "Did you mean 'dcml_cub'"),
        (["--space", "demo", "--resume"], "--resume needs --name"),
        (["--space", "demo", "--name", "a b"], "--name 'a b'"),
        (["--space", "demo", "--address", "not an address"], "expected 'auto' or HOST:PORT"),
        (["--space", "demo", "--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
        (["--space", "demo", "--gpus-per-trial", "1.5"], "trains on one GPU, the other 0.5 would idle"),
        (["--space", "demo", "--gpus-per-trial", "2"], "trains on one GPU, the other 1 would idle; use --gpus-per-trial 1"),
        (["--space", "demo", "--num-samples", "0"], "--num-samples must be > 0"),
        (["--space", "dcml_cub"], "no data root given for dataset 'cub200'"),
        (["--space", "dcml_cub", "--data-root", "/nonexistent/cub"], "does not exist"),
        (
            ["--space", "demo", "--mlflow-uri", "http://127.0.0.1:9"],
            "server http://127.0.0.1:9 is unreachable",
        ),
        (["--space", "demo", "--mlflow-uri", "file:///tmp/mlruns"], "file store"),
        (["--space", "demo", "--name", "nothing-here", "--resume"], "no sweep 'nothing-here' in "),
    ],
)
def test_invalid_input_is_one_line_and_exit_code_2(capsys, argv, message) -> None:
    code, out, err = _main(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert list(Path.cwd().iterdir()) == []  # a refused command creates nothing (no runs/ray, no mlflow.db)


def test_an_address_where_no_ray_head_listens_is_refused_at_once(capsys) -> None:
    port = free_port()  # nothing listens there
    code, _, err = _main(capsys, "--space", "demo", "--address", f"127.0.0.1:{port}")
    assert code == 2 and f"no Ray head answers at --address 127.0.0.1:{port}" in err


def test_a_data_root_without_the_data_set_says_what_is_missing(capsys, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _main(capsys, "--space", "dcml_cub", "--data-root", str(tmp_path / "empty"), "--dry-run")
    assert code == 2 and "no cub200 data set found" in err and "images/<NNN.class_name>" in err


def test_storage_that_cannot_be_created_is_rejected(capsys, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = _main(capsys, "--space", "demo", "--storage", str(tmp_path / "file" / "ray"))
    assert code == 2 and "--storage" in err and "cannot create" in err


def test_missing_pretrained_weights_are_reported(capsys, cub_root, tmp_path) -> None:
    (tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth").unlink()
    code, _, err = _main(capsys, "--space", "dcml_cub", "--data-root", str(cub_root), "--dry-run")
    assert code == 2 and "ImageNet weights for resnet50 not found" in err


def test_dry_run_validates_and_prints_the_sampled_configurations(capsys, cub_root) -> None:
    code, out, err = _main(
        capsys,
        "--space",
        "dcml_cub",
        "--data-root",
        str(cub_root),
        "--dry-run",
        "--num-samples",
        "5",
        "--seed",
        "3",
    )
    assert code == 0, err
    assert "All 5 configurations are valid." in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "compos_num" in line and "ensemble_num" in line)
    assert [line.split()[0] for line in lines[header + 1 : header + 6]] == ["1", "2", "3", "4", "5"]
    assert '"n_train_classes": 52' in out and '"n_val_classes": 13' in out  # 65 train classes, 20 % held out
    first = json.loads(
        out[out.index("First configuration in full:") + 28 : out.index("All 5 configurations")]
    )
    assert first["data"]["root"] == str(cub_root) and first["model"]["method"] == "dcml"
    assert not (Path.cwd() / "runs").exists()  # a dry run starts and writes nothing


def test_list_shows_every_space(capsys) -> None:
    code, out, _ = _main(capsys, "--list")
    assert code == 0
    for name in ("dcml_cub", "diva_sop", "margin_cub", "demo", "smoke"):
        assert f"{name}: " in out


def test_an_existing_sweep_is_not_overwritten(capsys, tmp_path) -> None:
    sweep = tmp_path / "runs" / "ray" / "taken"
    sweep.mkdir(parents=True)
    (sweep / "tuner.pkl").write_bytes(b"")
    code, _, err = _main(capsys, "--space", "demo", "--name", "taken")
    assert code == 2 and "already exists" in err and "--resume" in err


def test_resume_refuses_to_change_the_sweep_definition(capsys, tmp_path) -> None:
    state = tmp_path / "runs" / "ray" / "old"
    state.mkdir(parents=True)
    store = tmp_path / "store"
    saved = {
        "space": "demo",
        "name": "old",
        "storage": str(tmp_path / "runs" / "ray"),
        "data_root": None,
        "num_samples": 8,
        "max_epochs": None,
        "scheduler": "asha",
        "search": "optuna",
        "gpus_per_trial": None,
        "cpus_per_trial": 1,
        "max_concurrent": 2,
        "mlflow_uri": f"sqlite:///{store}/mlflow.db",
        "seed": 0,
    }
    (state / "sweep_state").mkdir()
    (state / "sweep_state" / "sweep.json").write_text(json.dumps(saved))
    code, _, err = _main(capsys, "--space", "demo", "--name", "old", "--resume", "--num-samples", "9")
    assert code == 2 and "--num-samples cannot change on --resume" in err
    code, _, err = _main(capsys, "--space", "smoke", "--name", "old", "--resume")
    assert code == 2 and "was run with --space demo" in err
    code, _, err = _main(capsys, "--space", "demo", "--name", "old", "--resume", "--mlflow-uri", str(store))
    assert (
        code == 2 and "has no Tune state" in err
    )  # same store given as a folder, but the driver never got far


@pytest.mark.parametrize("command", [["tune/run.py"], ["-m", "tune.run"]])
def test_the_sweep_command_runs_as_a_script_and_as_a_module(tiny_demo, short_tmp, command) -> None:  # noqa: F811
    """``python tune/run.py`` (from the repository root) and ``python -m tune.run`` are the same command; the
    package is imported as installed (here: ``PYTHONPATH`` = this checkout), without any ``sys.path`` edit."""
    argv = ["--space", "smoke", "--data-root", str(tiny_demo), "--dry-run", "--num-samples", "3"]
    proc = subprocess.run(
        [sys.executable, *command, *argv], cwd=REPO, env=sweep_env(short_tmp), capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "All 3 configurations are valid." in proc.stdout
    assert '"n_train_classes": 26' in proc.stdout  # smoke holds half of the 52 training classes out


def test_no_module_of_tune_shadows_a_top_level_module() -> None:
    """``python tune/run.py`` puts ``tune/`` first on ``sys.path``: a module there named like a top-level module
    (``outcome``, ``progress``...) would be imported instead of it by the libraries."""
    names = [p.stem for p in (REPO / "tune").glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
        f"print([n for n in {names!r} if importlib.util.find_spec(n) is not None])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)


def test_a_corrupt_image_in_the_data_set_is_named_before_ray_starts(capsys, cub_root) -> None:
    bad = next((cub_root / "cub200" / "images").glob("003.*/*.jpg"))
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    code, out, err = _main(capsys, "--space", "dcml_cub", "--data-root", str(cub_root), "--dry-run")
    assert code == 2, (out, err)
    assert "cannot be read" in err and bad.name in err


def test_a_data_set_with_too_few_images_per_class_is_refused(capsys, cub_root) -> None:
    for extra in sorted((cub_root / "cub200" / "images").glob("00[1-9].*/*_[1-3].jpg")):
        extra.unlink()  # classes 1-9 keep one image each
    code, out, err = _main(capsys, "--space", "dcml_cub", "--data-root", str(cub_root), "--dry-run")
    assert code == 2, (out, err)
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert "fewer images than samples_per_class=2" in err and "'001.Bird_1'" in err


def test_a_small_cub_subset_is_refused_with_the_split_and_the_fix(capsys, cub_root) -> None:
    """A user's subset whose validation split holds one class: refused before Ray, not scored 1.0 every epoch."""
    for folder in sorted((cub_root / "cub200" / "images").glob("*"))[8:]:
        for image in folder.glob("*.jpg"):
            image.unlink()
        folder.rmdir()  # 8 classes left: 4 for training, of which 20 % holds out one for validation
    code, out, err = _main(capsys, "--space", "diva_cub", "--data-root", str(cub_root), "--dry-run")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert "the validation split has 1 class(es) (4 images)" in err and "raise data.val_fraction" in err
    assert "each training batch draws 56 classes (data.batch_size 112" in err
    assert not (Path.cwd() / "runs").exists()  # refused before anything was written


def test_the_store_opened_while_ray_starts_is_removed_when_the_sweep_is_refused(tmp_path) -> None:
    from tune.store_warmup import StoreWarmUp

    refused = StoreWarmUp(f"sqlite:///{tmp_path / 'a.db'}")
    refused.wait()
    assert (tmp_path / "a.db").is_file()  # created in the background (MLflow's tables)
    refused.undo()
    assert not (tmp_path / "a.db").exists()
    kept = StoreWarmUp(f"sqlite:///{tmp_path / 'b.db'}")
    kept.keep()  # the sweep went ahead: its store stays
    kept.undo()
    assert (tmp_path / "b.db").is_file()
    existing = StoreWarmUp(f"sqlite:///{tmp_path / 'b.db'}")  # a store that existed before is never removed
    existing.undo()
    assert (tmp_path / "b.db").is_file()


_WARM_UP = r"""
import sqlite3, sys
from tune.store_warmup import StoreWarmUp

store = StoreWarmUp(sys.argv[1])
store.wait()  # the creating process only: this process never opened the store
tables = {row[0] for row in sqlite3.connect(store.created).execute("SELECT name FROM sqlite_master WHERE type='table'")}
print(int("mlflow" in sys.modules), int({"experiments", "runs", "alembic_version"} <= tables))
"""


def test_a_new_store_is_created_by_another_process(tmp_path) -> None:
    """The tables of a new SQLite store are created without importing MLflow in the command's own process (that
    process imports torch and Ray Tune meanwhile), in folders made for it."""
    uri = f"sqlite:///{tmp_path / 'new' / 'folder' / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-c", _WARM_UP, uri], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "1"]


def test_a_refused_sweep_removes_the_store_and_folders_made_for_it_but_never_a_store_with_runs(
    capsys, tmp_path, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from tune.store_warmup import StoreWarmUp

    started = []

    class Recorded(StoreWarmUp):
        def undo(self) -> None:
            started.append(self.created)
            super().undo()

    monkeypatch.setattr(run_module, "StoreWarmUp", Recorded)
    code, _, err = _main(capsys, "--space", "dcml_cub", "--mlflow-uri", str(tmp_path / "ml" / "store"))
    assert code == 2 and "no data root given" in err
    assert started == [tmp_path / "ml" / "store" / "mlflow.db"]  # its creation had started when the sweep was refused
    assert list(tmp_path.iterdir()) == []  # the folders ml/store and its mlflow.db are gone again
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    store = StoreWarmUp(uri)
    store.wait()
    client = MlflowClient(uri)  # meanwhile another command on the same new store writes a run
    client.create_run(client.create_experiment("other"))
    store.undo()
    assert (tmp_path / "shared.db").is_file() and len(client.search_runs([client.get_experiment_by_name("other").experiment_id])) == 1
