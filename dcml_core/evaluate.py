"""Evaluate saved embeddings: ``python -m dcml_core.evaluate EMBEDDINGS.npy LABELS.npy [--json]``.

Prints Recall@k, NMI, F1, mAP_c and MAP@R computed exactly as the DiVA/DCML reference (algorithms.md §5), with
query set = gallery set. Bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from dcml_core.evaluation import compute_metrics
from dcml_core.exit_codes import EXIT_OK, EXIT_USAGE


class InputError(Exception):
    """Input the user has to fix; reported as one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = _Parser(prog="python -m dcml_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("embeddings", type=Path, help="(N, D) float array saved with numpy.save")
    p.add_argument("labels", type=Path, help="(N,) integer class labels saved with numpy.save")
    p.add_argument(
        "--nmi-k",
        type=int,
        default=None,
        help="k-means clusters for NMI/F1 (the reference uses the number of TRAIN classes); "
        "default: the number of distinct labels",
    )
    p.add_argument(
        "--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8], metavar="K", help="k of Recall@k"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the kNN runs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read {what} file {path} as a .npy array ({err})") from None


def load_inputs(emb_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load and check the two arrays; raise InputError saying what is wrong."""
    emb, labels = _load(emb_path, "embeddings"), _load(labels_path, "labels")
    if emb.ndim != 2:
        raise InputError(f"embeddings must be a 2-D (N, D) array, got shape {emb.shape} from {emb_path}")
    if not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise InputError(f"embeddings must be numeric, got dtype {emb.dtype} from {emb_path}")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise InputError(
            f"embeddings contain NaN or infinite values in {bad} of {len(emb)} rows ({emb_path})"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) != len(emb):
        raise InputError(f"shape mismatch: {len(emb)} embeddings but {len(labels)} labels")
    if len(emb) < 2:
        raise InputError(f"need at least 2 embeddings, got {len(emb)}")
    return emb.astype(np.float32, copy=False), labels


def resolve_cli_device(name: str) -> str:
    """``auto`` -> cuda if available else cpu; ``cuda`` without CUDA is an input error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was given but CUDA is not available; use --device cpu or auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def format_table(metrics: dict[str, float], header: str) -> str:
    """Human-readable two-column table."""
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:.6f}" for k, v in metrics.items()]
    return "\n".join([header, f"{'metric':<{width}}  value", *rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        emb, labels = load_inputs(args.embeddings, args.labels)
        device = resolve_cli_device(args.device)
        start = time.perf_counter()
        metrics = compute_metrics(emb, labels, recall_ks=args.recall_ks, nmi_k=args.nmi_k, device=device)
    except (InputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(metrics))
    else:
        n_classes = len(np.unique(labels))
        header = (
            f"{len(emb)} embeddings of dimension {emb.shape[1]}, {n_classes} classes, "
            f"k-means k={args.nmi_k or n_classes}, device {device}, {time.perf_counter() - start:.2f} s"
        )
        print(format_table(metrics, header))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
