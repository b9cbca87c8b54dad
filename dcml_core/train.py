"""Single-run command with the original projects' flag names: ``python -m dcml_core.train ...``.

It accepts the command lines of the Revisiting-DML, DiVA and DCML READMEs / sample runs (with the DCML README's
typos corrected), maps them onto one :class:`ExperimentConfig` (in ``dcml_core/flags.py``), trains with the same
:class:`Engine` the sweeps use, logs parameters and per-epoch metrics to MLflow (default: a local SQLite file,
no server needed) and writes a resumable checkpoint every epoch.

The method is chosen with ``--method`` or, by default, from the flags (see ``dcml_core/flags.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dcml_core.checkpoint import CheckpointError
from dcml_core.collapse import EmbeddingCollapseError
from dcml_core.config import ConfigError
from dcml_core.config.training import due
from dcml_core.exit_codes import EXIT_OK, EXIT_TRAINING_FAILED, EXIT_USAGE
from dcml_core.flags import build_parser, config_from_args
from dcml_core.flags import check_unknown as _check_unknown
from dcml_core.tracking import COLLAPSED_TAG, TrackingError

__all__ = ["build_parser", "config_from_args", "main", "run"]


def run(args: argparse.Namespace) -> dict[str, float]:
    """Train (or resume) one run; returns the final metrics."""
    import torch

    from dcml_core.checkpoint import first_usable, resume_candidates, save_rotating
    from dcml_core.collapse import collapse_message
    from dcml_core.engine import Engine
    from dcml_core.run_logger import RunLogger

    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.resume:
        # the run folder (latest, else previous if latest is corrupt) or one checkpoint folder
        resume = Path(args.resume).resolve()
        candidates = resume_candidates(resume)
        engine = first_usable(candidates, lambda d: Engine.restore(d, progress=say), say)
        cfg = engine.cfg
        save_dir = resume if candidates[0].parent == resume else resume.parent
    else:
        cfg = config_from_args(args)
        engine = Engine(cfg, progress=say)
        save_dir = None
    run_name = args.run_name or f"{cfg.model.method}-{cfg.data.dataset}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    save_dir = save_dir or Path(args.save_path or Path("runs") / "single" / run_name).resolve()
    logger = RunLogger(
        args.mlflow_uri, args.experiment_name, run_name, save_dir, resume=bool(args.resume), enabled=not args.no_mlflow
    )
    logger.start(cfg, engine.data.summary())
    say(f"[dcml_core.train] {cfg.model.method} on {cfg.data.dataset} ({engine.data.summary()}), device {engine.device}")
    final: dict[str, float] = {}
    try:
        if cfg.eval.at_start and engine.epoch == 0:  # the starting network: the reference point of every curve
            start = {**engine.evaluate("val"), **engine.evaluate("test")}
            logger.log_epoch(0, start)
            say(_epoch_line(0, cfg.schedule.n_epochs, start) + "  (starting network)")
        while engine.epoch < cfg.schedule.n_epochs:
            metrics = engine.train_epoch()
            last = engine.epoch == cfg.schedule.n_epochs
            chosen = cfg.eval.epoch_metrics(due(engine.epoch, cfg.eval.full_every, cfg.schedule.n_epochs))
            metrics.update(engine.evaluate("val", chosen))
            collapsed = collapse_message(metrics, "val")
            if last or collapsed or (cfg.eval.test_every and engine.epoch % cfg.eval.test_every == 0):
                metrics.update(engine.evaluate("test", chosen))
            save_rotating(save_dir, engine.save)
            logger.log_epoch(engine.epoch, metrics)
            say(_epoch_line(engine.epoch, cfg.schedule.n_epochs, metrics))
            final = metrics
            if collapsed:
                logger.set_tag(COLLAPSED_TAG, str(engine.epoch))
                raise EmbeddingCollapseError(f"epoch {engine.epoch}: {collapsed}")
        logger.finish(final, save_dir / "latest", status="FINISHED")
    except BaseException as err:
        logger.finish(final, None, status="FAILED", error=f"{type(err).__name__}: {err}")
        raise
    return final


def _epoch_line(epoch: int, total: int, m: dict[str, float]) -> str:
    keys = ["train/loss", "val/recall_at_1", "val/nmi", "test/recall_at_1", "test/nmi", "val/embedding_spread"]
    parts = [f"{k}={m[k]:.4f}" for k in keys if k in m]
    return f"epoch {epoch}/{total}  " + "  ".join(parts) + f"  ({m.get('train/epoch_time_s', 0):.1f}s)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_check_unknown(parser, argv))
    try:
        if not args.resume:
            config_from_args(args)  # validate every flag before anything expensive
        final = run(args)
    except (ConfigError, TrackingError, CheckpointError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"python -m dcml_core.train: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except EmbeddingCollapseError as err:
        print(f"python -m dcml_core.train: run stopped: {err}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    print(json.dumps({k: round(v, 4) for k, v in final.items() if k.startswith(("val/", "test/"))}, indent=1))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
