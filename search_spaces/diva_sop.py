"""DiVA on Stanford Online Products, centred on the published R50 run (algorithms.md §2.4): batch 112, lr
1e-5, 150 epochs, lr x 0.3 at epoch 70, alphas 0.2, rho 150 x 3, MoCo temperature 0.01, 70 key batches.
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import (
    FOUR_HEADS,
    asha_after_lr_drop,
    diva_baseline,
    diva_block,
    gamma_around,
    log_around,
)

N_EPOCHS = 150
TAUS = [55, 70, 85]

LR, TAU, GAMMA = 1e-5, 70, 0.3  # the published run (docstring)
DIVA = {"alpha_ssl": 0.2, "alpha": 0.2, "rho": 150.0, "temperature": 0.01}

SPACE = {
    "data": {"dataset": "online_products", "batch_size": 112, "samples_per_class": 2, "num_workers": 6},
    "model": {
        "method": "diva",
        "arch": "resnet50_frozen_normalize",
        "embed_dim": 128,
        "features": FOUR_HEADS,
    },
    "diva": diva_block(**DIVA, n_key_batches=70),
    "optim": {"lr": log_around(LR)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": gamma_around(GAMMA)},
    "eval": {"evaltypes": ["paper", "all"]},
}
BASELINE = {**diva_baseline(**DIVA), "optim.lr": LR, "schedule.tau": TAU, "schedule.gamma": GAMMA}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # one rung, at epoch 90
DEFAULTS = {"num_samples": 48, "cpus_per_trial": 8}
DESCRIPTION = "DiVA on SOP, ResNet-50, published run at the centre"
