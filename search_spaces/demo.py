"""The embedded demo: DCML + DiVA on the rendered glyph data set, sized for 2 CPU cores (< 10 minutes).

Everything is shrunk: ResNet-18 from random init at 32 px (an epoch takes about 10 s on one core, against
about 30 s at the demo set's default 64 px), 32-d embeddings, batch 32, 4 key batches, 6 epochs, recall and
NMI only, one evaltype (the paper's CUB weighting of the four heads). The learning rate range is higher than
the paper's because nothing is pretrained. Data loading stays in the trial process (``num_workers`` 0): with
one CPU per trial, loader workers only compete with the training thread.

ASHA compares trials at epochs 1, 2 and 4 (grace period 1, reduction factor 2): about 25 trial-epochs instead
of 48 (measured: 7.4 minutes in all, demo data build included, on 2 cores that other jobs kept at a load of
about 6). Schedule-aware rungs are not possible in 6 epochs (the LR drops at tau 2..4 overlap the rungs), so
this space shows ASHA at work rather than a fair LR-aware comparison (see docs/sweeps.md).
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FOUR_HEADS, diva_block

N_EPOCHS = 6

SPACE = {
    "data": {
        "dataset": "demo",
        "batch_size": 32,
        "samples_per_class": 2,
        "num_workers": 0,
        "crop_size": 32,
        "resize_size": 36,
    },
    "model": {
        "method": "dcml",
        "arch": "resnet18_frozen_normalize",
        "pretrained": "none",
        "embed_dim": 32,
        "features": FOUR_HEADS,
        "compos_num": tune.choice([4, 8]),
        "ensemble_num": tune.randint(2, 7),  # K in 2..6
    },
    "diva": diva_block(alpha_ssl=0.5, alpha=0.3, rho=1500.0, temperature=0.01, n_key_batches=4),
    "optim": {"lr": tune.loguniform(1e-4, 3e-3)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice([2, 3, 4]), "gamma": tune.uniform(0.1, 0.5)},
    "eval": {"evaltypes": ["paper_cub"], "metrics": ["recall", "nmi"]},
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = {"grace_period": 1, "reduction_factor": 2, "max_t": N_EPOCHS}  # rungs at epochs 1, 2 and 4
DEFAULTS = {"num_samples": 8, "cpus_per_trial": 1, "max_concurrent": 2}
DESCRIPTION = (
    "Embedded demo: DCML + DiVA on rendered glyphs, ResNet-18 at 32 px, 6 epochs; runs on 2 CPU cores"
)
