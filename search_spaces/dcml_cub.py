"""DCML on CUB-200-2011, centred on the README command of wzzheng/DCML (algorithms.md §3.4).

Paper: lr 1.5e-5, batch 100, 300 epochs, lr x 0.2 at epoch 55, alpha_ssl 0.5, alpha_shared = alpha_intra =
0.3, rho 1500 on each of the three decorrelation directions, MoCo temperature 0.01, 30 key batches, K = M = 4.
"""

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FULL_EVERY, asha_after_lr_drop, dcml_model_block, published_run

N_EPOCHS, TAUS = 300, [40, 55, 70]
BLOCKS, BASELINE = published_run(  # the published run (docstring)
    lr=1.5e-5, tau=55, taus=TAUS, gamma=0.2, n_epochs=N_EPOCHS, n_key_batches=30, dcml=True,
    diva={"alpha_ssl": 0.5, "alpha": 0.3, "rho": 1500.0, "temperature": 0.01},
)

SPACE = {
    "data": {"dataset": "cub200", "batch_size": 100, "samples_per_class": 2, "num_workers": 6},
    "model": dcml_model_block(),
    **BLOCKS,
    "eval": {"evaltypes": ["paper", "all"], "full_every": FULL_EVERY["cub200"]},  # primary: the paper's CUB weighting (0.5, 1, 1, 1)
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # rungs at epochs 75 and 225
DEFAULTS = {"num_samples": 64, "cpus_per_trial": 8}
DESCRIPTION = (
    "DCML (K sub-embeddings, M composites, 4 DiVA heads) on CUB200, ResNet-50, paper settings at the centre"
)
