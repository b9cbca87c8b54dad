"""DiVA on CUB-200-2011, centred on the published R50 run (algorithms.md §2.4, SampleRuns): batch 112, lr
1e-5, 350 epochs, lr x 0.2 at epoch 55, alpha_ssl = alpha_shared = alpha_intra = 0.3, rho 1500 x 3, MoCo
temperature 0.01, 30 key batches. DCML's compos_num/ensemble_num do not exist for DiVA and are not sampled.
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

N_EPOCHS = 350
TAUS = [40, 55, 70]

LR, TAU, GAMMA = 1e-5, 55, 0.2  # the published run (docstring)
DIVA = {"alpha_ssl": 0.3, "alpha": 0.3, "rho": 1500.0, "temperature": 0.01}

SPACE = {
    "data": {"dataset": "cub200", "batch_size": 112, "samples_per_class": 2, "num_workers": 6},
    "model": {
        "method": "diva",
        "arch": "resnet50_frozen_normalize",
        "embed_dim": 128,
        "features": FOUR_HEADS,
    },
    "diva": diva_block(**DIVA, n_key_batches=30),
    "optim": {"lr": log_around(LR)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": gamma_around(GAMMA)},
    "eval": {"evaltypes": ["paper", "all"]},
}
BASELINE = {**diva_baseline(**DIVA), "optim.lr": LR, "schedule.tau": TAU, "schedule.gamma": GAMMA}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # rungs at epochs 75 and 225
DEFAULTS = {"num_samples": 64, "cpus_per_trial": 8}
DESCRIPTION = "DiVA (4 heads) on CUB200, ResNet-50, the published run at the centre"
