"""Run a hyper-parameter sweep: ``python tune/run.py --space NAME`` (see ``--help`` and docs/sweeps.md).

Parse -> validate everything without Ray (space, configurations, data root, MLflow store, storage, resume
state) -> start or join Ray -> cluster checks -> MLflow parent run -> Tuner.fit (or restore) -> summary.
Invalid input ends with one line on stderr and exit code 2, before Ray starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (
    None,
    "",
):  # run as a script: put the repository first, not tune/ (it would shadow modules)
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import dataclasses  # noqa: E402
import shlex  # noqa: E402
from typing import Any  # noqa: E402

import search_spaces  # noqa: E402
from dcml_core.config import ConfigError  # noqa: E402
from dcml_core.tracking import TrackingError, check_tracking_uri, resolve_tracking_uri  # noqa: E402
from tune.cli import (  # noqa: E402
    SweepSettings,
    UsageError,
    build_parser,
    check_args,
    check_sync_args,
    default_name,
    default_repeat_name,
    load_saved,
    merge_resume,
    storage_root,
)
from tune.cluster import ClusterError, check_address  # noqa: E402
from tune.preflight import (  # noqa: E402
    check_disk,
    check_no_credentials,
    check_own_folder,
    check_space_edges,
    checkpoint_bytes,
)
from tune.validation import check_config, check_data, validate_space  # noqa: E402

EXIT_USAGE = 2


def list_spaces() -> str:
    """One paragraph per registered space."""
    out = []
    for name in search_spaces.available():
        space = search_spaces.get(name)
        sampled = ", ".join(space.distributions())
        out.append(f"{name}: {space.description}\n    {space.n_epochs} epochs, samples {sampled}")
    return "\n".join(out)


def settings_from_args(args) -> SweepSettings:
    """Checked settings of a new sweep or, with --resume, the saved ones."""
    check_args(args)
    space = search_spaces.get(args.space)
    storage = storage_root(args.storage, create=not args.dry_run)
    repeat = args.from_sweep is not None and not args.resume
    name = args.name or (default_repeat_name(args.from_sweep) if repeat else default_name(args.space))
    if args.data_root is not None:
        args.data_root = str(Path(args.data_root).expanduser().resolve())
    if args.mlflow_uri is not None:
        args.mlflow_uri = resolve_tracking_uri(args.mlflow_uri)
    fresh = SweepSettings(
        space=args.space,
        name=name,
        storage=storage,
        data_root=args.data_root,
        num_samples=(
            args.repeat_top_k * args.seeds if repeat else args.num_samples or space.defaults["num_samples"]
        ),
        max_epochs=args.max_epochs,
        scheduler="fifo" if repeat else args.scheduler or "asha",
        search="grid" if repeat else args.search or "optuna",
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial or space.defaults["cpus_per_trial"],
        max_concurrent=args.max_concurrent or space.defaults["max_concurrent"],
        address=args.address,
        mlflow_uri=args.mlflow_uri or resolve_tracking_uri(None),
        seed=0 if args.seed is None else args.seed,
        dry_run=args.dry_run,
        repeat_of=args.from_sweep if repeat else None,
        repeat_top_k=args.repeat_top_k if repeat else None,
        repeat_seeds=args.seeds if repeat else None,
    )
    if args.resume:
        saved = merge_resume(args, load_saved(fresh.state_dir))
        return SweepSettings(**{**saved, "storage": storage, "address": args.address, "resume": True})
    if (
        not args.dry_run
        and fresh.storage_is_local
        and Path(fresh.sweep_path).exists()
        and any(Path(fresh.sweep_path).iterdir())
    ):
        raise UsageError(
            f"sweep '{name}' already exists in {fresh.sweep_path}: continue it with --resume or pick another "
            "--name"
        )
    return fresh


def check_resumable(settings: SweepSettings) -> None:
    from ray import tune

    if settings.storage_is_local:
        check_own_folder(Path(settings.sweep_path))
        check_own_folder(settings.state_dir)
    if not tune.Tuner.can_restore(settings.sweep_path):
        raise UsageError(
            f"sweep '{settings.name}' has no Tune state in {settings.sweep_path} (its driver stopped before "
            "the first trial was set up); start it again without --resume"
        )


def repeat_text(settings: SweepSettings, configs: list[dict[str, Any]]) -> str:
    """The ``--dry-run`` output of a seed-repeat sweep: one line per (configuration, seed)."""
    from analysis.params import config_id

    lines = [
        f"Seed repeats of sweep '{settings.repeat_of}': best {settings.repeat_top_k} configuration(s) x "
        f"seeds 0..{settings.repeat_seeds - 1} = {len(configs)} runs (FIFO, full length)"
    ]
    lines += [
        f"  config {config_id(c)}  seed {c['seed']}  {c['schedule']['n_epochs']} epochs" for c in configs
    ]
    return "\n".join([*lines, f"All {len(configs)} configurations are valid."])


def check_original(tracking_uri: str, name: str) -> None:
    """The sweep ``--from`` names must be an active experiment of the MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise UsageError(
            f"--from {name}: no such sweep in the MLflow store {tracking_uri}; available: "
            f"{', '.join(names) or 'none'} (check --from and --mlflow-uri)"
        )


def repeat_plan(settings: SweepSettings) -> tuple[SweepSettings, list[dict[str, Any]]]:
    """The full configurations of a seed-repeat sweep (best K of ``--from`` x seeds 0..N-1), each checked.

    ``--max-epochs`` shortens the runs; ``--data-root`` replaces the original's data folder.
    """
    from analysis.repeats import repeat_configs, top_k_configs

    check_original(settings.mlflow_uri, settings.repeat_of)
    space = search_spaces.get(settings.space)
    best = top_k_configs(settings.mlflow_uri, settings.repeat_of, settings.repeat_top_k, mode=space.mode)
    if settings.data_root is not None:
        best = [{**c, "data": {**c["data"], "root": settings.data_root}} for c in best]
    configs = repeat_configs(best, range(settings.repeat_seeds), n_epochs=settings.max_epochs)
    checked_data = set()
    for cfg in (space.build_config(c) for c in configs):
        if cfg.data not in checked_data:
            check_data(cfg)
            checked_data.add(cfg.data)
        check_config(cfg)
    return dataclasses.replace(settings, num_samples=len(configs)), configs


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_spaces())
        return 0
    if args.sync_mlflow:  # complete MLflow from Ray's results on disk; no Ray runtime needed
        from tune.sync_mlflow import sync_command

        try:
            check_sync_args(args)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        return sync_command(args)
    try:
        if args.mlflow_uri is not None:
            check_no_credentials(args.mlflow_uri)
        settings = settings_from_args(args)
        check_tracking_uri(settings.mlflow_uri)
        check_address(settings.address)
        if settings.resume:
            check_resumable(settings)
        space = search_spaces.get(settings.space).with_overrides(settings.data_root, settings.max_epochs)
        n_checked = settings.num_samples if settings.dry_run else min(settings.num_samples, 8)
        repeats = None
        if settings.is_repeat and not settings.resume:
            settings, repeats = repeat_plan(settings)
            space = space.with_overrides(max_epochs=max(c["schedule"]["n_epochs"] for c in repeats))
        else:
            check_space_edges(space, settings.seed)  # every value it can draw, before any data is read
            report = validate_space(space, n=n_checked, seed=settings.seed)
            if not settings.resume and not settings.dry_run:
                per_checkpoint = checkpoint_bytes(report.configs[0], int(report.data["n_train_classes"]))
                check_disk(settings.storage, settings.num_samples, per_checkpoint)
    except (
        UsageError,
        ClusterError,
        search_spaces.SearchSpaceError,
        ConfigError,
        TrackingError,
        OSError,  # FileNotFoundError and friends: data, weights, storage
        ValueError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if settings.dry_run:
        if repeats is not None:
            print(repeat_text(settings, repeats))
        else:
            print(report.text(space, settings.seed))
        return 0
    from tune.driver import run_sweep  # imports Ray; only now

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    return run_sweep(settings, space, command, repeats)


if __name__ == "__main__":
    sys.exit(main())
