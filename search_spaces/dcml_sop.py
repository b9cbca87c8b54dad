"""DCML on Stanford Online Products. No SOP command is published for DCML (algorithms.md §3.4): DCML's own lr,
batch and K/M ranges, the DiVA SOP R50 row for the rest (§2.4): 150 epochs, lr x 0.3 at 70, alphas 0.2, rho
150, MoCo temperature 0.01, 70 key batches. [RECON]
"""

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FULL_EVERY, asha_after_lr_drop, dcml_model_block, published_run

N_EPOCHS, TAUS = 150, [55, 70, 85]
BLOCKS, BASELINE = published_run(  # the published run (docstring)
    lr=1.5e-5, tau=70, taus=TAUS, gamma=0.3, n_epochs=N_EPOCHS, n_key_batches=70, dcml=True,
    diva={"alpha_ssl": 0.2, "alpha": 0.2, "rho": 150.0, "temperature": 0.01},
)

SPACE = {
    "data": {"dataset": "online_products", "batch_size": 100, "samples_per_class": 2, "num_workers": 6},
    "model": dcml_model_block(),
    **BLOCKS,
    "eval": {"evaltypes": ["paper", "all"], "full_every": FULL_EVERY["online_products"]},  # primary: the paper's SOP weighting (1, 1, 1, 1)
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = asha_after_lr_drop(TAUS, N_EPOCHS, reduction_factor=3)  # one rung, at epoch 90
DEFAULTS = {"num_samples": 48, "cpus_per_trial": 8}
DESCRIPTION = "DCML on SOP, ResNet-50; DCML lr/batch with the DiVA SOP settings (reconstructed)"
