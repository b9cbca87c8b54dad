"""GPU readiness of the engine, on the CPU (issue 12): out-of-memory retries that leave the run exact, float32
evaluation embeddings, the AMP dtype and deterministic switches, persistent loader workers that keep exact resume,
and checkpoints that restore across devices or fall back."""

from __future__ import annotations

import pytest
import torch

import dcml_core.engine as engine_module
from dcml_core.checkpoint import CheckpointError, first_usable
from dcml_core.config import ConfigError, ExperimentConfig
from dcml_core.data_bundle import loader_workers
from dcml_core.engine import DeviceOutOfMemoryError, Engine
from dcml_core.precision import amp_dtype, make_scaler, set_deterministic
from tests.conftest import tiny_config
from tests.test_engine import _params as _state
from tests.test_engine import _threads  # noqa: F401  (autouse fixture: 2 torch threads)

OOM = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _assert_same_run(a: Engine, b: Engine) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _fail_once(calls: list[int], fail_at: int, fn):
    """``fn`` that raises a CUDA out-of-memory error on its ``fail_at``-th call (counted in ``calls``)."""

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OOM
        return fn(*args, **kwargs)

    return wrapped


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "time" not in k}


# ---------------------------------------------------------------- 4. shared GPUs: retried out-of-memory errors
def test_an_out_of_memory_error_retried_everywhere_leaves_the_run_exact(tiny_demo_root, monkeypatch):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, "diva"))
    clean = Engine(cfg)
    clean.train_epoch()
    expected = clean.evaluate("val")

    faulty = Engine(cfg, oom_retries=1, oom_wait_s=0)
    ssl = faulty.objective.terms["ssl"]
    forward, keys, calls = faulty.model.forward, ssl.keys, {"step": [0], "fill": [0], "knn": [0], "eval": [0]}
    monkeypatch.setattr(ssl, "keys", _fail_once(calls["fill"], 1, keys))  # the queue fill's first batch
    monkeypatch.setattr(faulty.model, "forward", _fail_once(calls["step"], 2, forward))  # the second step
    monkeypatch.setattr(engine_module, "compute_metrics", _fail_once(calls["knn"], 1, engine_module.compute_metrics))
    faulty.train_epoch()
    monkeypatch.setattr(faulty.model, "forward", _fail_once(calls["eval"], 1, forward))  # the first eval batch
    got = faulty.evaluate("val")

    assert faulty.oom.retried == 4  # one in each place, each retried once
    _assert_same_run(clean, faulty)  # random draws restored before each retry: the same run
    assert _scores(got) == _scores(expected)


def test_the_re_clustering_hook_is_retried(tiny_demo_root, monkeypatch):
    cfg = ExperimentConfig.from_dict(tiny_config(
        tiny_demo_root, "diva", model={"features": ["discriminative", "dc"]},
        diva={"dc_ncluster": 8, "dc_update_f": 1, "rho_decorrelation": [500]}, schedule={"n_epochs": 1}))  # fmt: skip
    clean = Engine(cfg)  # engines share torch's global RNG: each is built right before it trains
    clean.train_epoch()
    faulty = Engine(cfg, oom_retries=2, oom_wait_s=0)
    monkeypatch.setattr(faulty, "_train_features", _fail_once([0], 1, faulty._train_features))
    faulty.train_epoch()
    assert faulty.oom.retried == 1
    assert torch.equal(clean.objective.terms["dc"].pseudo_labels, faulty.objective.terms["dc"].pseudo_labels)
    _assert_same_run(clean, faulty)


def test_retries_are_bounded_and_the_error_says_so(tiny_demo_root, monkeypatch):
    engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root)), oom_retries=2, oom_wait_s=0)
    said: list[str] = []
    engine.oom.say = said.append

    def always(*args, **kwargs):
        raise OOM

    monkeypatch.setattr(engine.model, "forward", always)
    with pytest.raises(DeviceOutOfMemoryError, match=r"in training .* \(still after 2 retries 0 s apart\)"):
        engine.train_epoch()
    assert len(said) == 2 and "retry 2/2" in said[-1]


def test_other_errors_are_not_retried(tiny_demo_root, monkeypatch):
    engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root)), oom_retries=3, oom_wait_s=0)
    calls = [0]

    def broken(*args, **kwargs):
        calls[0] += 1
        raise ValueError("a bug, not memory")

    monkeypatch.setattr(engine.model, "forward", broken)
    with pytest.raises(ValueError, match="a bug"):
        engine.train_epoch()
    assert calls == [1] and engine.oom.retried == 0


# ---------------------------------------------------------------- 5. precision and determinism
def test_evaluation_embeddings_are_float32_even_under_amp(tiny_demo_root, monkeypatch):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root))
    plain = Engine(cfg)
    heads, labels = plain.embed("val")
    amp = Engine(cfg)
    # what AMP does on CUDA, here with the CPU's bfloat16 autocast: training uses it, evaluation must not
    monkeypatch.setattr(amp, "_autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    heads_amp, labels_amp = amp.embed("val")
    assert torch.equal(labels, labels_amp)
    for name in heads:
        assert heads_amp[name].dtype == torch.float32 and torch.equal(heads[name], heads_amp[name]), name


def test_amp_dtype_choice():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(True, "auto", cuda, bf16=True) == torch.bfloat16
    assert amp_dtype(True, "auto", cuda, bf16=False) == torch.float16
    assert amp_dtype(True, "fp16", cuda, bf16=True) == torch.float16
    assert amp_dtype(True, "bf16", cuda, bf16=True) == torch.bfloat16
    assert amp_dtype(False, "bf16", cuda, bf16=True) is None and amp_dtype(True, "auto", cpu) is None
    with pytest.raises(ConfigError, match="no native bfloat16.*'auto' or 'fp16'"):
        amp_dtype(True, "bf16", cuda, bf16=False)
    with pytest.raises(ConfigError, match="amp_dtype"):
        ExperimentConfig.from_dict({"amp_dtype": "fp8"})
    assert ExperimentConfig.from_dict({"amp_dtype": "bf16"}).amp_dtype == "bf16"
    # only float16 needs loss scaling
    assert make_scaler(cpu, torch.float16).is_enabled()
    assert not make_scaler(cpu, torch.bfloat16).is_enabled() and not make_scaler(cpu, None).is_enabled()


def test_deterministic_switches_on_torch_deterministic_algorithms_on_cuda():
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic(True, cuda=False)  # the CPU runs are deterministic already: left alone
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(True, cuda=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# ---------------------------------------------------------------- 6. loader workers
def test_loader_workers_follow_the_cpu_share(tiny_demo_root, monkeypatch):
    assert [loader_workers(6, c) for c in (1, 2, 4, 8, 16)] == [0, 1, 3, 6, 6]
    import dcml_core.data_bundle as bundle

    monkeypatch.setattr(bundle, "available_cores", lambda: 2)  # the single-run command on a 2-core machine
    engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root, data={"num_workers": 4})))
    assert engine.loaders.workers == 1


def test_persistent_workers_keep_exact_resume_and_draw_as_the_main_process(tiny_demo_root, tmp_path):
    cfg = tiny_config(tiny_demo_root, "diva")
    straight = Engine(ExperimentConfig.from_dict(cfg))  # loads in the main process
    for _ in range(2):
        straight.train_epoch()
    expected = straight.evaluate("val")

    workers = ExperimentConfig.from_dict({**cfg, "data": {**cfg["data"], "num_workers": 2}})
    first = Engine(workers, cpus=3)
    loader = first.loaders.train_loader()
    assert first.loaders.workers == 2 and loader.persistent_workers and loader.pin_memory is False
    first.train_epoch()
    assert first.loaders.train_loader() is loader  # the same workers for the next epoch
    first.save(tmp_path / "ckpt")
    del first, loader
    resumed = Engine.restore(tmp_path / "ckpt", cpus=3)
    resumed.train_epoch()
    _assert_same_run(straight, resumed)
    assert _scores(resumed.evaluate("val")) == _scores(expected)


# ---------------------------------------------------------------- 7. restore across devices, fallback
def test_a_checkpoint_without_scaler_state_restores_into_a_float16_run(tiny_demo_root, tmp_path, monkeypatch):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root))
    cpu_run = Engine(cfg)
    cpu_run.train_epoch()
    cpu_run.save(tmp_path / "cpu")  # no float16 AMP: an empty GradScaler state
    # what a CUDA float16 run builds (the CPU has a real GradScaler too)
    monkeypatch.setattr(engine_module, "make_scaler", lambda device, dtype: torch.amp.GradScaler("cpu"))
    fp16_run = Engine.restore(tmp_path / "cpu")
    assert fp16_run.scaler.is_enabled() and fp16_run.scaler.get_scale() == 65536.0
    _assert_same_run(cpu_run, fp16_run)
    fp16_run.train_epoch()  # and it trains on, calibrating its scale
    fp16_run.save(tmp_path / "fp16")
    monkeypatch.undo()
    back = Engine.restore(tmp_path / "fp16")  # the reverse: a scaler state into a run without AMP
    assert not back.scaler.is_enabled() and back.epoch == 2
    _assert_same_run(fp16_run, back)


def test_a_state_that_does_not_load_is_a_checkpoint_error_and_falls_back(tiny_demo_root, tmp_path):
    engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root)))
    engine.train_epoch()
    engine.save(tmp_path / "good")
    engine.save(tmp_path / "bad")
    state = torch.load(tmp_path / "bad" / "state.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)  # wrong shape: torch raises a RuntimeError while loading
    torch.save(state, tmp_path / "bad" / "state.pt")
    with pytest.raises(CheckpointError, match=f"does not load: RuntimeError: (?s:.*){name}"):
        Engine.restore(tmp_path / "bad")
    said: list[str] = []
    restored = first_usable([tmp_path / "bad", tmp_path / "good"], Engine.restore, said.append)
    assert restored.epoch == 1 and "falling back to the previous checkpoint" in said[0]
