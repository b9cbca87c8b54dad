"""DCML on CUB-200-2011, centred on the README command of wzzheng/DCML (algorithms.md §3.4).

Paper: lr 1.5e-5, batch 100, 300 epochs, lr x 0.2 at epoch 55, alpha_ssl 0.5, alpha_shared = alpha_intra =
0.3, rho 1500 on each of the three decorrelation directions, MoCo temperature 0.01, 30 key batches, K = M = 4.
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import (
    DCML_BASELINE,
    asha_after_lr_drop,
    dcml_model_block,
    diva_baseline,
    diva_block,
    gamma_around,
    log_around,
)

N_EPOCHS = 300
TAUS = [40, 55, 70]

LR, TAU, GAMMA = 1.5e-5, 55, 0.2  # the published run (docstring)
DIVA = {"alpha_ssl": 0.5, "alpha": 0.3, "rho": 1500.0, "temperature": 0.01}

SPACE = {
    "data": {"dataset": "cub200", "batch_size": 100, "samples_per_class": 2, "num_workers": 6},
    "model": dcml_model_block(),
    "diva": diva_block(**DIVA, n_key_batches=30),
    "optim": {"lr": log_around(LR)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": gamma_around(GAMMA)},
    "eval": {"evaltypes": ["paper", "all"]},  # primary: the paper's CUB weighting (0.5, 1, 1, 1)
}
BASELINE = {**DCML_BASELINE, **diva_baseline(**DIVA), "optim.lr": LR, "schedule.tau": TAU, "schedule.gamma": GAMMA}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # rungs at epochs 75 and 225
DEFAULTS = {"num_samples": 64, "cpus_per_trial": 8}
DESCRIPTION = (
    "DCML (K sub-embeddings, M composites, 4 DiVA heads) on CUB200, ResNet-50, paper settings at the centre"
)
