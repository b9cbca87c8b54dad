"""Baseline: margin loss + distance-weighted mining on CUB-200-2011 (Revisiting DML, algorithms.md §1.6):
batch 112, lr 1e-5, 150 epochs, margin 0.2, beta 1.2 (0.6 in some published runs). The reference schedule
never decays (tau 1000); the space also offers drops at epochs 30 and 50. No DiVA or DCML parameters.
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FULL_EVERY, asha_after_lr_drop, gamma_around, log_around

N_EPOCHS = 150
TAUS = [30, 50, 1000]  # 1000: the reference default, no decay

LR, TAU, GAMMA = 1e-5, 1000, 0.3  # the published runs: no decay (tau 1000), gamma the default

SPACE = {
    "data": {"dataset": "cub200", "batch_size": 112, "samples_per_class": 2, "num_workers": 6},
    "model": {"method": "margin", "arch": "resnet50_frozen_normalize", "embed_dim": 128},
    "loss": {"margin": tune.uniform(0.1, 0.3), "beta": tune.uniform(0.6, 1.4)},
    "optim": {"lr": log_around(LR)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": gamma_around(GAMMA)},
    "eval": {"evaltypes": ["discriminative"], "full_every": FULL_EVERY["cub200"]},
}
BASELINE = {"loss.margin": 0.2, "loss.beta": 1.2, "optim.lr": LR, "schedule.tau": TAU, "schedule.gamma": GAMMA}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=2)  # rungs at epochs 55 and 110
DEFAULTS = {"num_samples": 32, "cpus_per_trial": 8}
DESCRIPTION = "Margin-loss baseline (Revisiting DML) on CUB200, ResNet-50"
