"""Bad input and unsafe settings are refused by ``tune/run.py`` before Ray starts (exit code 2, one line), and
the security defaults hold: loopback-only servers in the docs, ``weights_only`` checkpoint loading, no
credentials on the command line, resume only from the user's own folders."""

from __future__ import annotations

import json
import logging
import os
import re
import types
from pathlib import Path

import pytest
import torch
from ray import tune

import search_spaces
from dcml_core.checkpoint import CheckpointError, load_checkpoint
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.optim import param_groups, state_per_parameter
from dcml_core.tracking import ui_command
from search_spaces import SearchSpace
from tests.conftest import tiny_config
from tune import preflight
from tune import run as run_module
from tune.cli import UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("validation must fail before Ray starts"))


def _main(capsys, *argv: str) -> tuple[int, str]:
    code = run_module.main(list(argv))
    return code, capsys.readouterr().err


def _register(monkeypatch, space: dict) -> None:
    """Make ``--space custom`` resolve to ``space`` (the smoke space's other settings)."""
    smoke = search_spaces.get("smoke")
    module = types.SimpleNamespace(
        __file__="custom.py",
        SPACE=space,
        METRIC=smoke.metric,
        MODE=smoke.mode,
        SCHEDULER=smoke.scheduler,
        DESCRIPTION="test space",
        DEFAULTS=smoke.defaults,
    )
    original = search_spaces.get
    monkeypatch.setattr(
        search_spaces,
        "get",
        lambda name: SearchSpace.from_module(name, module) if name == "custom" else original(name),
    )


def _smoke_space(root: str, **changes) -> dict:
    space = {k: dict(v) if isinstance(v, dict) else v for k, v in search_spaces.get("smoke").space.items()}
    space["data"]["root"] = root
    for dotted, value in changes.items():
        group, key = dotted.split("__")
        space.setdefault(group, {})[key] = value
    return space


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"model__compos_nmu": 4},
            ["unknown configuration key 'model.compos_nmu'", "did you mean 'compos_num'"],
        ),
        (
            {"model__compos_num": tune.choice([2, 4, 5])},
            ["model.compos_num = 5", "must be a multiple of the number of heads"],
        ),
        (
            {"data__batch_size": tune.choice([128, 129])},
            ["data.batch_size = 129", "must be a multiple of"],
        ),
        ({"diva__alpha_shared": tune.uniform(-0.2, 0.5)}, ["diva.alpha_shared = -0.2", "a number >= 0"]),
    ],
)
def test_every_value_a_space_can_draw_is_checked(
    capsys, monkeypatch, tiny_demo_root, changes, expected
) -> None:
    _register(monkeypatch, _smoke_space(tiny_demo_root, **changes))
    code, err = _main(capsys, "--space", "custom", "--dry-run", "--num-samples", "2")
    assert code == 2 and err.startswith("error: "), err
    for text in expected:
        assert text in err, err


def test_edge_values_cover_choices_and_both_bounds() -> None:
    assert preflight.edge_values(tune.choice([2, 4])) == [2, 4]
    assert preflight.edge_values(tune.randint(2, 5)) == [2, 4]  # upper bound exclusive
    assert preflight.edge_values(tune.loguniform(1e-5, 1e-3)) == [1e-5, 1e-3]


def test_the_disk_must_hold_the_checkpoints_the_sweep_keeps(capsys, monkeypatch, tiny_demo_root) -> None:
    free = 50_000_000
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=free))
    code, err = _main(capsys, "--space", "smoke", "--data-root", tiny_demo_root, "--num-samples", "40")
    assert code == 2, err
    assert "too little free disk for the checkpoints" in err and "40 trials x up to 3 kept checkpoints" in err
    assert "only 50 MB is free" in err and "--storage" in err
    assert not (Path("runs") / "ray").exists() or not any((Path("runs") / "ray").iterdir())


@pytest.mark.parametrize("optim", [{"lr": 1e-3}, {"lr": 1e-3, "optimizer": "sgd", "momentum": 0.9}])
def test_checkpoint_size_estimate_matches_a_real_checkpoint(tiny_demo_root, tmp_path, optim) -> None:
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, "diva", optim=optim))  # key encoder, queue, 4 heads
    engine = Engine(cfg, device="cpu")
    engine.train_epoch()  # creates the optimiser's state (Adam's moments, SGD's momentum buffers)
    groups = param_groups(cfg.optim, engine.model, engine.objective.param_groups())
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in g["params"]] for g in engine.optimizer.param_groups]
    bound = state_per_parameter(cfg.optim) * sum(p.numel() for g in groups for p in g["params"])
    real = sum(t.numel() for s in engine.optimizer.state.values() for t in s.values() if t.dim() > 0)
    assert 0.99 * bound <= real <= bound  # parameters without a gradient yet have no state
    folder = engine.save(tmp_path / "ckpt")
    actual = sum(f.stat().st_size for f in folder.iterdir())
    estimate = preflight.checkpoint_bytes(cfg, engine.data.n_train_classes)
    assert 0.85 * actual <= estimate <= 1.15 * actual, (estimate, actual)


@pytest.mark.parametrize(
    "uri",
    ["http://alice:s3cret@127.0.0.1:5000", "https://alice@mlflow.example.org", "postgresql://u:s3cret@db/m"],
)
def test_credentials_on_the_command_line_are_refused_without_echoing_them(capsys, uri) -> None:
    code, err = _main(capsys, "--space", "demo", "--mlflow-uri", uri, "--dry-run")
    assert code == 2 and "carries credentials" in err, err
    assert "s3cret" not in err and "MLFLOW_TRACKING_PASSWORD" in err


def test_resume_reads_only_folders_of_this_user(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "tuner.pkl").write_bytes(b"x")
    preflight.check_own_folder(sweep)  # own, not world-writable: fine
    os.chmod(sweep / "tuner.pkl", 0o666)
    with pytest.raises(UsageError, match=r"tuner.pkl is writable by every user .*chmod o-w"):
        preflight.check_own_folder(sweep)
    os.chmod(sweep / "tuner.pkl", 0o644)
    (sweep / "link.pkl").symlink_to(sweep / "tuner.pkl")
    with pytest.raises(UsageError, match="is a symbolic link"):
        preflight.check_own_folder(sweep)


def test_resume_of_a_world_writable_sweep_is_refused(capsys, tmp_path) -> None:
    state = tmp_path / "ray" / "s1" / "sweep_state"
    state.mkdir(parents=True)
    settings = {
        "space": "demo", "name": "s1", "storage": str(tmp_path / "ray"), "data_root": None, "num_samples": 1,
        "max_epochs": None, "scheduler": "asha", "search": "optuna", "gpus_per_trial": None, "cpus_per_trial": 1,
        "max_concurrent": None, "mlflow_uri": f"sqlite:///{tmp_path}/m.db", "seed": 0,
    }  # fmt: skip
    (state / "sweep.json").write_text(json.dumps(settings))
    os.chmod(state.parent, 0o777)
    code, err = _main(
        capsys, "--space", "demo", "--name", "s1", "--storage", str(tmp_path / "ray"), "--resume"
    )
    assert code == 2 and "refusing to resume" in err and "writable by every user" in err, err


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoints_are_loaded_with_weights_only(tmp_path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    torch.save({"epoch": 1, "payload": _Payload()}, folder / "state.pt")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)
    assert not Path("pwned").exists()  # nothing was executed


def test_documented_servers_bind_to_loopback() -> None:
    """Every ``mlflow server``/``mlflow ui``/``ray start --head`` command in the docs binds to 127.0.0.1."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    commands = []
    for doc in docs:
        text = doc.read_text().replace("\\\n", " ")
        commands += re.findall(r"(?:mlflow (?:server|ui)|ray start --head) --[^\n`]*", text)
    assert len(commands) >= 3
    for command in commands:
        host = re.search(r"--(?:dashboard-)?host[ =](\S+)", command)
        assert host and host.group(1) == "127.0.0.1", command
        assert "0.0.0.0" not in command and "PASSWORD" not in command, command
    assert "--host 127.0.0.1" in ui_command("sqlite:///x.db")  # the command the sweep summary prints
    text = ui_command("sqlite:///x.db", "7")
    assert text.endswith(", then http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=dcml-trials"
                         "&workflowType=machine_learning")  # fmt: skip


def test_a_local_ray_starts_without_dashboard_and_warns_when_auth_is_off(monkeypatch, capsys) -> None:
    import ray

    from tune import cluster

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    cluster.start_ray(None)
    assert calls[-1]["include_dashboard"] is False and "address" not in calls[-1]
    assert calls[-1]["_system_config"] == {**cluster.NO_PRESTARTED_WORKERS, **cluster.FAST_LOCAL_CONNECT}
    assert "RAY_AUTH_MODE" not in capsys.readouterr().err
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster.start_ray(None)
    assert "accepts unauthenticated connections" in capsys.readouterr().err


def test_trial_workers_wait_passively_unless_the_user_chose(monkeypatch) -> None:
    from tune.cluster import REPO_ROOT, worker_runtime_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    env = worker_runtime_env()["env_vars"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert worker_runtime_env()["env_vars"]["OMP_WAIT_POLICY"] == "ACTIVE"


def test_checkpoint_staging_folder_follows_the_environment(monkeypatch, tmp_path):
    from tune.trainable import staging_root

    monkeypatch.setenv("DCML_STAGING_DIR", str(tmp_path))
    assert staging_root() == str(tmp_path)
    monkeypatch.delenv("DCML_STAGING_DIR")
    assert staging_root(min_free=10**18) is None  # no RAM folder that large: the default temporary folder


def test_rays_default_auth_notice_is_dropped_but_its_auth_disabled_warning_stays() -> None:
    from tune.cluster import quiet_default_auth_notice

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet_default_auth_notice()
    quiet_default_auth_notice()  # once is enough: no second filter
    assert len(logger.filters) == 1
    notices = (
        "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.",
        "Token authentication is disabled for this Ray cluster. Anyone with network access ...",
    )
    records = [logging.LogRecord(logger.name, logging.WARNING, __file__, 1, text, None, None) for text in notices]
    assert [bool(logger.filter(record)) for record in records] == [False, True]  # the logger's own filters
