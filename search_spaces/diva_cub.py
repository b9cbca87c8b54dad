"""DiVA on CUB-200-2011, centred on the published R50 run (algorithms.md §2.4, SampleRuns): batch 112, lr
1e-5, 350 epochs, lr x 0.2 at epoch 55, alpha_ssl = alpha_shared = alpha_intra = 0.3, rho 1500 x 3, MoCo
temperature 0.01, 30 key batches. DCML's compos_num/ensemble_num do not exist for DiVA and are not sampled.
"""

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FULL_EVERY, asha_after_lr_drop, diva_model_block, published_run

N_EPOCHS, TAUS = 350, [40, 55, 70]
BLOCKS, BASELINE = published_run(  # the published run (docstring)
    lr=1e-5, tau=55, taus=TAUS, gamma=0.2, n_epochs=N_EPOCHS, n_key_batches=30,
    diva={"alpha_ssl": 0.3, "alpha": 0.3, "rho": 1500.0, "temperature": 0.01},
)

SPACE = {
    "data": {"dataset": "cub200", "batch_size": 112, "samples_per_class": 2, "num_workers": 6},
    "model": diva_model_block(),
    **BLOCKS,
    "eval": {"evaltypes": ["paper", "all"], "full_every": FULL_EVERY["cub200"]},
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # rungs at epochs 75 and 225
DEFAULTS = {"num_samples": 64, "cpus_per_trial": 8}
DESCRIPTION = "DiVA (4 heads) on CUB200, ResNet-50, the published run at the centre"
