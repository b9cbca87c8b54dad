"""``python -m dcml_core.evaluate``: JSON and table output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcml_core.evaluate import main
from dcml_core.evaluation import compute_metrics

REPO = Path(__file__).resolve().parents[1]
KEYS = ["recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1", "map_c", "map@r"]


@pytest.fixture
def arrays(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 10)
    x = rng.standard_normal((12, 16))[labels] + 0.8 * rng.standard_normal((120, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path / "emb.npy", tmp_path / "labels.npy", x, labels


def test_json_output_equals_compute_metrics(arrays, capsys: pytest.CaptureFixture) -> None:
    emb_path, labels_path, x, labels = arrays
    assert main([str(emb_path), str(labels_path), "--json", "--nmi-k", "15", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == KEYS
    assert out == compute_metrics(x, labels, nmi_k=15, device="cpu")
    assert main([str(emb_path), str(labels_path), "--json", "--recall-ks", "1", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [k for k in out if k.startswith("recall")] == ["recall@1", "recall@5"]
    assert out["nmi"] == compute_metrics(x, labels, metrics=("nmi",))["nmi"]  # default k: distinct labels


def test_table_output_lists_every_metric(arrays, capsys: pytest.CaptureFixture) -> None:
    emb_path, labels_path, x, labels = arrays
    assert main([str(emb_path), str(labels_path)]) == 0
    text = capsys.readouterr().out
    assert "120 embeddings of dimension 16, 12 classes, k-means k=12" in text
    expected = compute_metrics(x, labels)
    for key in KEYS:
        assert f"{key}  " in text and f"{expected[key]:.6f}" in text, key


def _bad_case(kind: str, tmp_path: Path, emb_path: Path, labels_path: Path) -> tuple[list[str], str]:
    x, labels = np.load(emb_path), np.load(labels_path)
    bad = tmp_path / "bad.npy"
    if kind == "missing":
        return [str(tmp_path / "nope.npy"), str(labels_path)], "embeddings file not found"
    if kind == "mismatch":
        np.save(bad, labels[:-3])
        return [str(emb_path), str(bad)], "shape mismatch: 120 embeddings but 117 labels"
    if kind == "nan":
        x[[3, 7], 0] = np.nan
        np.save(bad, x)
        return [str(bad), str(labels_path)], "NaN or infinite values in 2 of 120 rows"
    if kind == "not2d":
        np.save(bad, x.reshape(120, 4, 4))
        return [str(bad), str(labels_path)], "must be a 2-D (N, D) array, got shape (120, 4, 4)"
    if kind == "labels2d":
        np.save(bad, labels[:, None])
        return [str(emb_path), str(bad)], "labels must be a 1-D integer array, got shape (120, 1)"
    if kind == "labels_float":
        np.save(bad, labels.astype(np.float64))
        return [str(emb_path), str(bad)], "labels must be a 1-D integer array, got shape (120,) dtype float64"
    if kind == "not_npy":
        bad.write_text("not a numpy file")
        return [str(bad), str(labels_path)], "cannot read embeddings file"
    if kind == "nmi_k":
        return [str(emb_path), str(labels_path), "--nmi-k", "500"], "must be an integer in [1, N=120]"
    if kind == "recall_k":
        return [str(emb_path), str(labels_path), "--recall-ks", "1", "120"], "recall_ks must be integers"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["missing", "mismatch", "nan", "not2d", "labels2d", "labels_float", "not_npy", "nmi_k", "recall_k"],
)
def test_bad_input_one_line_exit_2(kind: str, arrays, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv, message = _bad_case(kind, tmp_path, arrays[0], arrays[1])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_requested_without_cuda(arrays, capsys: pytest.CaptureFixture) -> None:
    assert main([str(arrays[0]), str(arrays[1]), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_argparse_errors_exit_2_with_one_line(arrays, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(arrays[0]), str(arrays[1]), "--recall-ks", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value: 'x'" in err and err.count("\n") == 1


def test_module_runs_as_a_command(arrays, tmp_path: Path) -> None:
    """One real process (stdout must hold only the JSON); error paths are covered through main() above."""
    emb_path, labels_path, x, labels = arrays
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "dcml_core.evaluate"]
    ok = subprocess.run(
        [*cmd, str(emb_path), str(labels_path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == compute_metrics(x, labels)
    assert "Traceback" not in ok.stderr
