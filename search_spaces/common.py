"""Building blocks shared by the search-space modules: paper-centred ranges, LR-schedule-aware ASHA rungs."""

from __future__ import annotations

from typing import Any

from ray import tune

# DiVA's four heads in the paper order (algorithms.md §2.4 published runs; DCML §3.4).
FOUR_HEADS = ["discriminative", "selfsimilarity", "shared", "intra"]

# Bounded evaluation (docs/performance.md): Recall@k, the objective, every epoch; NMI and F1 (k-means over every
# class), mAP_c and MAP@R every N epochs, at the ASHA rungs and at the last epoch. SOP's 11,316 test clusters
# make its full evaluation cost minutes per evaltype on a CPU faiss.
FULL_EVERY = {"cub200": 5, "cars196": 5, "online_products": 10}


def log_around(centre: float, factor: float = 3.0) -> Any:
    """Log-uniform on [centre / factor, centre * factor]: the paper value is the geometric centre."""
    return tune.loguniform(centre / factor, centre * factor)


def gamma_around(centre: float) -> Any:
    """Uniform LR decay factor on [centre / 2, min(1, 2 centre)]."""
    return tune.uniform(centre / 2, min(1.0, 2 * centre))


def diva_block(
    alpha_ssl: float,
    alpha: float,
    rho: float,
    temperature: float,
    n_key_batches: int,
    alpha_factor: float = 3.0,
    rho_factor: float = 5.0,
) -> dict[str, Any]:
    """DiVA auxiliary objectives around the paper weights (algorithms.md §2.4, §3.4).

    The three loss weights are sampled independently (log-uniform, ``alpha_factor`` either side). One
    decorrelation weight rho is sampled (log-uniform, ``rho_factor`` either side) and applied to every direction
    (``rho_broadcast``), which is what the published runs do by passing the same value three times. The MoCo
    temperature is log-uniform around the published 0.01.
    """
    return {
        "ssl": "fast_moco",
        "sharing": "random",
        "intra": "random",
        "alpha_ssl": log_around(alpha_ssl, alpha_factor),
        "alpha_shared": log_around(alpha, alpha_factor),
        "alpha_intra": log_around(alpha, alpha_factor),
        "rho_decorrelation": log_around(rho, rho_factor),
        "rho_broadcast": True,
        "moco_temperature": log_around(temperature),
        "moco_n_key_batches": n_key_batches,
    }


def asha_after_lr_drop(
    tau_choices: list[int], n_epochs: int, reduction_factor: int = 3, margin: int = 5
) -> dict[str, int]:
    """ASHA settings whose first rung comes ``margin`` epochs after the LATEST LR drop the space can sample.

    ``tau`` is a MultiStepLR milestone (algorithms.md §1.5): before its drop a trial with a late ``tau`` looks
    worse than one that already decayed, so a rung placed between the drops would stop trials for their
    schedule, not their quality. Putting the grace period after every sampled drop (ignoring milestones >=
    n_epochs, which never fire) makes every rung compare trials that have all decayed. Rungs: grace * rf**k.
    """
    drops = [t for t in tau_choices if t < n_epochs]
    grace = min(max(drops, default=0) + margin, n_epochs)
    return {"grace_period": max(1, grace), "reduction_factor": reduction_factor, "max_t": n_epochs}


DCML_BASELINE = {"model.compos_num": 4, "model.ensemble_num": 4}  # K = M = 4: the DCML README command (§3.4)


def diva_baseline(alpha_ssl: float, alpha: float, rho: float, temperature: float) -> dict[str, float]:
    """The published DiVA weights as a space's ``BASELINE`` entries (the values :func:`diva_block` centres on)."""
    return {
        "diva.alpha_ssl": alpha_ssl,
        "diva.alpha_shared": alpha,
        "diva.alpha_intra": alpha,
        "diva.rho_decorrelation": rho,
        "diva.moco_temperature": temperature,
    }


def dcml_model_block() -> dict[str, Any]:
    """DCML network on ResNet-50 with the four DiVA heads: K sub-embeddings and M composites are sampled."""
    return {
        "method": "dcml",
        "arch": "resnet50_frozen_normalize",
        "embed_dim": 128,
        "features": FOUR_HEADS,
        "compos_num": tune.choice([4, 8, 12]),  # M, a multiple of the 4 heads
        "ensemble_num": tune.randint(2, 9),  # K in 2..8
    }


def diva_model_block() -> dict[str, Any]:
    """DiVA network on ResNet-50 with the four heads (no DCML sub-embeddings or compositors)."""
    return {"method": "diva", "arch": "resnet50_frozen_normalize", "embed_dim": 128, "features": FOUR_HEADS}


def published_run(
    *,
    lr: float,
    tau: int,
    taus: list[int],
    gamma: float,
    n_epochs: int,
    diva: dict[str, float],
    n_key_batches: int,
    dcml: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sampled ``diva``, ``optim`` and ``schedule`` blocks of a space centred on a published DiVA/DCML run,
    and the space's ``BASELINE`` (that run's values: each published number is written once, in the space module).
    ``diva``: ``alpha_ssl``, ``alpha`` (shared and intra), ``rho`` and ``temperature`` as in :func:`diva_block`."""
    blocks = {
        "diva": diva_block(**diva, n_key_batches=n_key_batches),
        "optim": {"lr": log_around(lr)},
        "schedule": {"n_epochs": n_epochs, "tau": tune.choice(taus), "gamma": gamma_around(gamma)},
    }
    baseline = {**(DCML_BASELINE if dcml else {}), **diva_baseline(**diva)}
    return blocks, {**baseline, "optim.lr": lr, "schedule.tau": tau, "schedule.gamma": gamma}
