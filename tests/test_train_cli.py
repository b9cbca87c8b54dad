"""``python -m dcml_core.train``: the original command lines map onto the configuration; runs log to MLflow."""

from __future__ import annotations

import shlex
from pathlib import Path

import mlflow
import pytest
import torch

from dcml_core import train
from dcml_core.engine import Engine
from dcml_core.tracking import EXPERIMENT_KIND, git_state, param_text

DCML_README_1 = (
    "--dataset cub200 --tau 55 --gamma 0.2 --gpu 0 --seed 0 --compos_num 4 --ensemble_num 4 --embed_dim 128 --bs 100 "
    "--n_epochs 300 --samples_per_class 2 --loss margin --batch_mining distance --arch resnet50_frozen_normalize"
)
DCML_README_2 = DCML_README_1 + (
    " --diva_ssl fast_moco --lr 0.000015 --evaltypes all --diva_rho_decorrelation 1500 1500 1500 "
    "--diva_features discriminative selfsimilarity shared intra --diva_moco_temperature 0.01 "
    "--diva_moco_n_key_batches 30 --diva_alpha_ssl 0.5 --diva_alpha_shared 0.3 --diva_alpha_intra 0.3"
)
DIVA_CUB_R50 = (
    "--dataset cub200 --log_online --project DiVA_SampleRuns --diva_ssl fast_moco --source_path /data "
    "--group CUB_DiVA-R50-512 --tau 55 --gamma 0.2 --diva_alpha_ssl 0.3 --diva_alpha_shared 0.3 "
    "--diva_alpha_intra 0.3 --diva_rho_decorrelation 1500 1500 1500 --diva_features discriminative selfsimilarity "
    "shared intra --diva_sharing random --evaltypes all --diva_moco_temperature 0.01  --diva_moco_n_key_batches 30 "
    "--n_epochs 350 --seed 0 --gpu 0 --samples_per_class 2 --loss margin --batch_mining distance "
    "--arch resnet50_frozen_normalize --embed_dim 128"
)
DIVA_DC = (
    "--source_path /data --log_online --project DiVA_Experiments --diva_rho_decorrelation 500 --diva_features "
    "discriminative dc --evaltypes all --diva_dc_update_f 2 --diva_dc_ncluster 300 --n_epochs 200 --seed 0 --gpu 0 "
    "--bs 104 --samples_per_class 2 --loss margin --batch_mining distance --arch bninception_normalize --embed_dim 256"
)


def _cfg(command: str):
    parser = train.build_parser()
    args = parser.parse_args(train._check_unknown(parser, shlex.split(command)))
    return train.config_from_args(args)


def test_dcml_readme_commands():
    plain = _cfg(DCML_README_1)
    assert plain.model.method == "dcml" and plain.model.features == ("discriminative",)
    assert (plain.schedule.tau, plain.schedule.gamma, plain.data.batch_size, plain.seed) == ((55,), 0.2, 100, 0)
    diva = _cfg(DCML_README_2)
    assert diva.model.method == "dcml" and len(diva.model.features) == 4
    assert (diva.diva.alpha_ssl, diva.diva.alpha_shared, diva.diva.alpha_intra) == (0.5, 0.3, 0.3)
    assert diva.diva.rho_decorrelation == (1500.0,) * 3 and diva.diva.moco_temperature == 0.01
    assert diva.optim.lr == 1.5e-5 and diva.eval.evaltypes == ("all",) and diva.diva.moco_n_key_batches == 30


def test_diva_sample_commands():
    cub = _cfg(DIVA_CUB_R50)
    assert cub.model.method == "diva" and cub.data.root == "/data" and cub.schedule.n_epochs == 350
    dc = _cfg(DIVA_DC)
    assert dc.model.features == ("discriminative", "dc") and dc.model.arch == "bninception_normalize"
    assert (dc.data.batch_size, dc.model.embed_dim, dc.diva.dc_ncluster) == (104, 256, 300)
    assert dc.diva.resolved_decorrelations(dc.model.features) == ()


@pytest.mark.parametrize(
    "argv, message",
    [
        ("--diva_aplha_ssl 0.5", "unknown flag --diva_aplha_ssl; did you mean --diva_alpha_ssl?"),
        ("--diva_alpha_ssl 0.5 diva_alpha_shared 0.3", "did you mean --diva_alpha_shared?"),
        ("--arch resent50_frozen_normalize", "Did you mean 'resnet50_frozen_normalize'"),
        ("--bs 33", "'data.batch_size' (33) must be a multiple"),
        ("--dataset cub200 --source_path /no/such/folder", "/no/such/folder"),
        ("--compos_num 6 --diva_features discriminative selfsimilarity shared intra", "multiple of the number of heads"),
        ("--evaluation_metrics e_recall@1 auc", "unknown evaluation metric 'auc'"),
    ],
)
def test_bad_command_lines(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = train.main(shlex.split(argv))
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def _run_until_crash(monkeypatch, argv: list[str], crash_epoch: int) -> None:
    """Run ``train.main(argv)`` until it crashes (KeyboardInterrupt) at the start of epoch ``crash_epoch``."""
    original = Engine.train_epoch
    calls = {"n": 0}

    def crash(self):
        calls["n"] += 1
        if calls["n"] == crash_epoch:
            raise KeyboardInterrupt("simulated crash")
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(Engine, "train_epoch", crash)
        with pytest.raises(KeyboardInterrupt):
            train.main(argv)


def test_run_logs_to_mlflow_and_resumes_the_same_run(tiny_demo_root, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    save = tmp_path / "run"
    argv = shlex.split(
        f"--dataset demo --source_path {tiny_demo_root} --arch resnet18_frozen_normalize --n_epochs 2 --bs 32 "
        f"--embed_dim 16 --crop_size 32 --resize_size 36 --kernels 0 --lr 1e-3 --evaluation_metrics e_recall@1 nmi "
        f"--mlflow_uri {uri} --save_path {save} --run_name cli-test --threads 2"
    )
    _run_until_crash(monkeypatch, argv, crash_epoch=2)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dcml_core.train").experiment_id])
    assert run.info.status == "FAILED" and "simulated crash" in run.data.tags["dcml.error"]
    assert run.data.params["model.method"] == "margin" and run.data.params["data.batch_size"] == "32"
    # the same encoding, tags and experiment kind as the sweeps (dcml_core/tracking.py)
    assert run.data.params["model.features"] == param_text(["discriminative"]) == '["discriminative"]'
    assert run.data.tags["mlflow.source.git.commit"] == git_state()[0] and run.data.tags["mlflow.user"]
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == EXPERIMENT_KIND["mlflow.experimentKind"]

    assert train.main(["--resume", str(save / "latest"), "--mlflow_uri", uri, "--threads", "2"]) == 0
    (run,) = client.search_runs([run.info.experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/recall_at_1")]
    assert steps == [0, 1, 2]  # the starting network at step 0, then one value per epoch, none logged twice
    assert "test/recall_at_1" in run.data.metrics and "train/loss" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} >= {
        "checkpoint/state.pt", "checkpoint/config.json"}


def test_resume_falls_back_to_the_previous_checkpoint_when_the_latest_is_truncated(
    tiny_demo_root, tmp_path, monkeypatch, capsys
):
    save = tmp_path / "run"
    # the demo's GroupNorm ConvNet: a frozen-BN ResNet-18 from random initialisation collapsed at epoch 3 on an
    # AVX-512 CPU (not on AVX2), and a collapsed run ends with exit code 1 (docs/demo.md)
    argv = shlex.split(
        f"--dataset demo --source_path {tiny_demo_root} --arch demo_cnn_normalize --n_epochs 3 --bs 32 "
        f"--embed_dim 16 --crop_size 32 --resize_size 36 --kernels 0 --lr 1e-3 --evaluation_metrics e_recall@1 "
        f"--no_mlflow --save_path {save} --run_name fallback --threads 2"
    )
    _run_until_crash(monkeypatch, argv, crash_epoch=3)
    assert torch.load(save / "previous" / "state.pt", weights_only=True)["epoch"] == 1
    state = save / "latest" / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a crash mid-copy

    resumed = []
    original_restore = Engine.restore.__func__

    def spy(cls, directory, *args, **kwargs):
        engine = original_restore(cls, directory, *args, **kwargs)
        resumed.append((Path(directory).name, engine.epoch))
        return engine

    monkeypatch.setattr(Engine, "restore", classmethod(spy))
    capsys.readouterr()
    assert train.main(["--resume", str(save), "--no_mlflow", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint {save / 'latest'} is unusable" in out and "corrupt or truncated" in out
    assert "falling back to the previous checkpoint" in out
    assert resumed == [("previous", 1)]  # epochs 2 and 3 trained again from epoch 1
    assert torch.load(save / "latest" / "state.pt", weights_only=True)["epoch"] == 3


def test_resume_with_every_checkpoint_corrupt_is_a_clear_error(tiny_demo_root, tmp_path, capsys):
    for name in ("latest", "previous"):
        (tmp_path / "run" / name).mkdir(parents=True)
        (tmp_path / "run" / name / "state.pt").write_bytes(b"PK\x03\x04 not a zip")
        (tmp_path / "run" / name / "config.json").write_text("{}")
    assert train.main(["--resume", str(tmp_path / "run"), "--no_mlflow"]) == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err and "latest" in err and "previous" in err
