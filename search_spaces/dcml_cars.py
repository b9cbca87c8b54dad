"""DCML on CARS196. No CARS command is published for DCML (algorithms.md §3.4): DCML's own lr, batch and
K/M ranges, the DiVA CARS R50 row for the rest (§2.4): 350 epochs, lr x 0.2 at 70, alphas 0.15, rho 100,
MoCo temperature 0.01, 30 key batches. [RECON]
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

N_EPOCHS = 350
TAUS = [55, 70, 85]

LR, TAU, GAMMA = 1.5e-5, 70, 0.2  # the published run (docstring)
DIVA = {"alpha_ssl": 0.15, "alpha": 0.15, "rho": 100.0, "temperature": 0.01}

SPACE = {
    "data": {"dataset": "cars196", "batch_size": 100, "samples_per_class": 2, "num_workers": 6},
    "model": dcml_model_block(),
    "diva": diva_block(**DIVA, n_key_batches=30),
    "optim": {"lr": log_around(LR)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": gamma_around(GAMMA)},
    "eval": {"evaltypes": ["paper", "all"]},  # primary: the paper's CARS weighting (0.5, 2, 2, 2)
}
BASELINE = {**DCML_BASELINE, **diva_baseline(**DIVA), "optim.lr": LR, "schedule.tau": TAU, "schedule.gamma": GAMMA}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # rungs at epochs 90 and 270
DEFAULTS = {"num_samples": 64, "cpus_per_trial": 8}
DESCRIPTION = "DCML on CARS196, ResNet-50; DCML lr/batch with the DiVA CARS settings (reconstructed)"
