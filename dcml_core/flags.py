"""The original projects' command-line flags (Revisiting-DML, DiVA, DCML) and their one mapping onto the configuration.

``python -m dcml_core.train`` parses them; :func:`config_from_args` is the only place that turns an argparse
namespace into an :class:`ExperimentConfig`. Names that select parts (``--loss``, ``--batch_mining``,
``--diva_features``, ``--evaluation_metrics``) are checked against the registries by the configuration.

The method is chosen with ``--method`` or, by default, from the flags: ``--compos_num``/``--ensemble_num``
mean DCML (the DCML ``main.py``), several ``--diva_features`` mean DiVA (``diva_main.py``), otherwise the
Revisiting margin baseline (``main.py``).
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any

from dcml_core.config import ConfigError, ExperimentConfig
from dcml_core.exit_codes import EXIT_USAGE
from dcml_core.head_names import DISCRIMINATIVE

DATASET_ALIASES = {"cub": "cub200", "cars": "cars196", "sop": "online_products", "stanford_online_products": "online_products"}
# Flags of the original scripts that only concern their own logging or hardware and have no effect here.
IGNORED = {"--log_online", "--project", "--group", "--savename", "--storage_metrics", "--no_train_metrics", "--extension"}


class FlagParser(argparse.ArgumentParser):
    """argparse that answers a misspelt or unsupported flag with a suggestion instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> FlagParser:
    description = "Single-run command with the original projects' flag names: ``python -m dcml_core.train ...``."
    p = FlagParser(prog="python -m dcml_core.train", description=description, allow_abbrev=False)
    a = p.add_argument
    # --- basic training parameters (Revisiting / DiVA / DCML parameters.py)
    a("--dataset", default="cub200", help="cub200 | cars196 | online_products | demo (embedded, no download)")
    a("--source_path", default=None, help="dataset folder or its parent (default: the demo cache for --dataset demo)")
    a("--lr", type=float, default=1e-5)
    a("--fc_lr", type=float, default=-1, help="only -1 (one network group) is supported, as in every published run")
    a("--decay", type=float, default=4e-4, help="Adam weight decay of the network")
    a("--n_epochs", type=int, default=150)
    a("--kernels", type=int, default=4, help="DataLoader workers (at most: one core less than this process may use)")
    a("--bs", type=int, default=112)
    a("--seed", type=int, default=1)
    a("--scheduler", default="step", choices=["step"])
    a("--gamma", type=float, default=0.3, help="learning-rate decay factor")
    a("--tau", type=int, nargs="+", default=[1000], help="epochs at which the learning rate is multiplied by gamma")
    a("--use_sgd", action="store_true")
    a("--optim", choices=["adam", "sgd"], default=None)
    a("--loss", default="margin", help="a registered loss (dcml_core.registry.LOSSES), e.g. margin")
    a("--batch_mining", default="distance", help="a registered miner (MINERS): distance, rho_distance, ...")
    a("--embed_dim", type=int, default=128)
    a("--arch", default="resnet50_frozen_normalize")
    a("--not_pretrained", action="store_true")
    a("--pretrained_weights", default=None, help="local weight file (torchvision or pretrainedmodels layout)")
    a("--evaluation_metrics", nargs="+", default=None, help="e_recall@K, nmi, f1, mAP_c, map@r, ... (METRICS)")
    a("--evaltypes", nargs="+", default=[DISCRIMINATIVE], help="heads, Combined_..-w1-..-wk, all, paper_cub, ...")
    a("--gpu", type=int, nargs="+", default=None, help="CUDA device index (ignored without CUDA)")
    a("--save_path", default=None, help="folder for this run's checkpoints (default ./runs/single/<run name>)")
    a("--data_sampler", default="class_random", choices=["class_random", "distinct_classes"])
    a("--samples_per_class", type=int, default=2)
    a("--train_val_split", type=float, default=None, help="reference form of the validation split: 0.8 = 20%% val")
    # --- loss and miner
    a("--loss_margin_margin", type=float, default=0.2)
    a("--loss_margin_beta_lr", type=float, default=5e-4)
    a("--loss_margin_beta", type=float, default=1.2)
    a("--loss_margin_nu", type=float, default=0.0)
    a("--loss_margin_beta_constant", action="store_true")
    a("--miner_distance_lower_cutoff", type=float, default=0.5)
    a("--miner_distance_upper_cutoff", type=float, default=1.4)
    a("--miner_distance_apply_upper_cutoff", action="store_true", help="not in the reference (it never applies it)")
    # --- DiVA
    a("--diva_ssl", default="fast_moco", choices=["fast_moco"])
    a("--diva_sharing", default="random", choices=["random", "standard"])
    a("--diva_intra", default="random", choices=["random"])
    a("--diva_features", nargs="+", default=[DISCRIMINATIVE], help="embedding heads (HEADS registry)")
    a("--diva_decorrelations", nargs="+", default=None)
    a("--diva_rho_decorrelation", type=float, nargs="+", default=[1500.0])
    a("--diva_rho_broadcast", action="store_true", help="one rho for every direction (reference: first only)")
    a("--diva_decorrnet_dim", type=int, default=512)
    a("--diva_decorrnet_lr", type=float, default=1e-5)
    a("--diva_dc_update_f", type=int, default=2)
    a("--diva_dc_ncluster", type=int, default=300)
    a("--diva_moco_momentum", type=float, default=0.9)
    a("--diva_moco_temperature", type=float, default=0.1)
    a("--diva_moco_n_key_batches", type=int, default=50)
    a("--diva_moco_lower_cutoff", type=float, default=0.5)
    a("--diva_moco_upper_cutoff", type=float, default=1.4)
    a("--diva_alpha_ssl", type=float, default=0.3)
    a("--diva_alpha_shared", type=float, default=0.3)
    a("--diva_alpha_intra", type=float, default=0.3)
    a("--diva_fixed", action="store_true", help="corrected DaNCE normalisation (DiVA repo, 2021-09)")
    # --- DCML
    a("--compos_num", type=int, default=None, help="M compositors (default 4); implies --method dcml")
    a("--ensemble_num", type=int, default=None, help="K sub-embeddings (default 4); implies --method dcml")
    a("--dis_on_subembeddings", action="store_true", help="DCML §3.6: margin loss on the sub-embeddings too")
    a("--eval_on", default="composites", choices=["composites", "subembeddings"])
    # --- ours
    a("--method", choices=["auto", "margin", "diva", "dcml"], default="auto")
    a("--val_fraction", type=float, default=None, help="share of training classes held out for validation (0.2)")
    a("--val_seed", type=int, default=0)
    a("--crop_size", type=int, default=None)
    a("--resize_size", type=int, default=None)
    a("--crop_scale", type=float, nargs=2, default=None, help="RandomResizedCrop scale (reference 0.08 1)")
    a("--test_every", type=int, default=1, help="evaluate the test split every N epochs (0: only at the end)")
    a("--no_eval_at_start", action="store_true", help="skip evaluating the starting network (logged at epoch 0)")
    a("--skip_bad_images", action="store_true", help="skip and count unreadable images instead of failing")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    a("--no_amp", action="store_true", help="disable mixed precision on CUDA")
    a("--amp_dtype", default="auto", choices=["auto", "bf16", "fp16"], help="AMP type (auto: bf16 where native)")
    a("--threads", type=int, default=None, help="torch CPU threads")
    a("--mlflow_uri", default=None, help="tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)")
    a("--experiment_name", default="dcml_core.train")
    a("--run_name", default=None)
    a("--no_mlflow", action="store_true")
    a("--resume", default=None, metavar="CHECKPOINT_DIR", help="continue the run saved in this checkpoint folder")
    a("--config", default=None, help="JSON file with a nested ExperimentConfig (flags are ignored)")
    return p


def check_unknown(parser: FlagParser, argv: list[str]) -> list[str]:
    """Drop ignored flags (and their values); reject unknown ones with a hint (e.g. --diva_aplha_ssl)."""
    known = {s for action in parser._actions for s in action.option_strings}
    kept: list[str] = []
    skipping = False
    for token in argv:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            skipping = flag in IGNORED
            if skipping:
                continue
            if flag not in known:
                close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]}?" if close else "; see --help for the accepted flags"
                parser.error(f"unknown flag {flag}{hint}")
        elif skipping:
            continue
        elif "--" + token in known:
            parser.error(f"unexpected argument {token!r}; did you mean --{token}?")
        kept.append(token)
    return kept


def _method(args: argparse.Namespace) -> str:
    if args.method != "auto":
        return args.method
    if args.compos_num is not None or args.ensemble_num is not None:
        return "dcml"
    return "diva" if len(args.diva_features) > 1 else "margin"


def _metrics(names: list[str] | None) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    """``--evaluation_metrics`` -> (eval.metrics, eval.recall_ks) via the METRICS registry's spellings."""
    from dcml_core.metrics import metric_from_flag

    if not names:
        return None, None
    metrics: list[str] = []
    ks: list[int] = []
    for name in names:
        try:
            key, k = metric_from_flag(name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if k is not None:
            ks.append(k)
        if key not in metrics:
            metrics.append(key)
    return tuple(metrics), tuple(ks) or None


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The one mapping from the original flags to the configuration tree."""
    if args.config:
        return ExperimentConfig.from_json(Path(args.config).read_text())
    if args.fc_lr not in (-1, -1.0):
        raise ConfigError("'--fc_lr' other than -1 is not supported (no published run uses it)")
    method = _method(args)
    metrics, ks = _metrics(args.evaluation_metrics)
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 1.0 - args.train_val_split if args.train_val_split is not None else 0.2
    pretrained = "auto"
    if args.not_pretrained:
        pretrained = "none"
    elif args.pretrained_weights:
        pretrained = str(Path(args.pretrained_weights).expanduser().resolve())
    device = args.device
    if args.gpu and device == "auto":
        import torch

        device = f"cuda:{args.gpu[0]}" if torch.cuda.is_available() else "auto"
    features = tuple(args.diva_features) if method != "margin" else (DISCRIMINATIVE,)
    d: dict[str, Any] = {
        "data": {
            "dataset": DATASET_ALIASES.get(args.dataset, args.dataset),
            "root": args.source_path,
            "val_fraction": val_fraction,
            "val_seed": args.val_seed,
            "batch_size": args.bs,
            "samples_per_class": args.samples_per_class,
            "sampler": args.data_sampler,
            "num_workers": args.kernels,
            "crop_size": args.crop_size,
            "resize_size": args.resize_size,
            "crop_scale": args.crop_scale,
            "skip_bad_images": args.skip_bad_images,
        },
        "model": {
            "method": method,
            "arch": args.arch,
            "embed_dim": args.embed_dim,
            "pretrained": pretrained,
            "features": features,
            "ensemble_num": args.ensemble_num or 4,
            "compos_num": args.compos_num or 4,
            "dis_on_subembeddings": args.dis_on_subembeddings,
            "eval_on": args.eval_on,
        },
        "loss": {
            "name": args.loss,
            "margin": args.loss_margin_margin,
            "beta": args.loss_margin_beta,
            "beta_lr": args.loss_margin_beta_lr,
            "nu": args.loss_margin_nu,
            "beta_constant": args.loss_margin_beta_constant,
        },
        "diva": {
            "ssl": args.diva_ssl,
            "sharing": args.diva_sharing,
            "intra": args.diva_intra,
            "alpha_ssl": args.diva_alpha_ssl,
            "alpha_shared": args.diva_alpha_shared,
            "alpha_intra": args.diva_alpha_intra,
            "rho_decorrelation": args.diva_rho_decorrelation,
            "rho_broadcast": args.diva_rho_broadcast,
            "decorrelations": args.diva_decorrelations,
            "decorrnet_dim": args.diva_decorrnet_dim,
            "decorrnet_lr": args.diva_decorrnet_lr,
            "moco_momentum": args.diva_moco_momentum,
            "moco_temperature": args.diva_moco_temperature,
            "moco_n_key_batches": args.diva_moco_n_key_batches,
            "moco_lower_cutoff": args.diva_moco_lower_cutoff,
            "moco_upper_cutoff": args.diva_moco_upper_cutoff,
            "fixed": args.diva_fixed,
            "dc_update_f": args.diva_dc_update_f,
            "dc_ncluster": args.diva_dc_ncluster,
        },
        "miner": {
            "name": args.batch_mining,
            "lower_cutoff": args.miner_distance_lower_cutoff,
            "upper_cutoff": args.miner_distance_upper_cutoff,
            "apply_upper_cutoff": args.miner_distance_apply_upper_cutoff,
        },
        "optim": {"optimizer": args.optim or ("sgd" if args.use_sgd else "adam"), "lr": args.lr, "weight_decay": args.decay},
        "schedule": {"n_epochs": args.n_epochs, "tau": args.tau, "gamma": args.gamma},
        "eval": {"evaltypes": args.evaltypes, "test_every": args.test_every, "at_start": not args.no_eval_at_start},
        "seed": args.seed,
        "device": device,
        "amp": not args.no_amp,
        "amp_dtype": args.amp_dtype,
    }
    if metrics:
        d["eval"]["metrics"] = metrics
    if ks:
        d["eval"]["recall_ks"] = ks
    return ExperimentConfig.from_dict(d)
