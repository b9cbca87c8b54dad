"""DiVA on Stanford Online Products, centred on the published R50 run (algorithms.md §2.4): batch 112, lr
1e-5, 150 epochs, lr x 0.3 at epoch 70, alphas 0.2, rho 150 x 3, MoCo temperature 0.01, 70 key batches.
"""

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FULL_EVERY, asha_after_lr_drop, diva_model_block, published_run

N_EPOCHS, TAUS = 150, [55, 70, 85]
BLOCKS, BASELINE = published_run(  # the published run (docstring)
    lr=1e-5, tau=70, taus=TAUS, gamma=0.3, n_epochs=N_EPOCHS, n_key_batches=70,
    diva={"alpha_ssl": 0.2, "alpha": 0.2, "rho": 150.0, "temperature": 0.01},
)

SPACE = {
    "data": {"dataset": "online_products", "batch_size": 112, "samples_per_class": 2, "num_workers": 6},
    "model": diva_model_block(),
    **BLOCKS,
    "eval": {"evaltypes": ["paper", "all"], "full_every": FULL_EVERY["online_products"]},
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # one rung, at epoch 90
DEFAULTS = {"num_samples": 48, "cpus_per_trial": 8}
DESCRIPTION = "DiVA on SOP, ResNet-50, published run at the centre"
