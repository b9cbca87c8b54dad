"""The embedded demo: DCML + DiVA on the rendered glyph data set, sized for 2 CPU cores (about 4 minutes).

Demo choices (the real spaces keep the papers' networks and settings):
- the backbone is a small GroupNorm ConvNet (``demo_cnn``, dcml_core/models/demo_cnn.py) trained from random
  initialisation at 32 px: without ImageNet weights, frozen BatchNorm statistics normalise nothing and the
  ResNet-18 that the demo used before collapsed under the DiVA/DCML objective (docs/demo.md);
- 32-d heads, batch 32, 4 key batches, 12 epochs, the cached data pipeline, recall and NMI only, one evaltype
  (the paper's CUB weighting of the four heads);
- the auxiliary weights are centred far below the paper's (alpha 0.1 instead of 0.3-0.5, rho 40 instead of
  1500), with ranges that reach the paper's values: from random initialisation the paper's weights swamp the
  discriminative signal for many epochs, which is what the sweep shows (docs/demo.md). The learning rate is
  centred at 1e-3 (the paper's 1e-5 is for fine-tuning a pretrained network).

ASHA compares trials at epochs 1, 3 and 9 (grace period 1, reduction factor 3), so about a third of the trials
train past epoch 1, a ninth past epoch 3. Every rung comes before the earliest learning-rate drop the space can
sample (tau 9, 10 or 11), so every rung compares trials at the same stage of their schedule. Measured with
benchmarks/bench_early_stopping.py and benchmarks/replay_asha.py on 24 configurations run to the end
(docs/performance.md): ASHA spent 0.42 of their device time and kept the best (0.33 on average over trial orders,
never more than a point lost); rungs at 2 and 6 cost 0.44-0.47.
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE
from search_spaces.common import FOUR_HEADS, diva_block, log_around

N_EPOCHS = 12
TAUS = [9, 10, 11]  # every drop comes after ASHA's last rung (epoch 9): rungs compare trials on equal schedules

SPACE = {
    "data": {
        "dataset": "demo",
        "batch_size": 32,
        "samples_per_class": 2,
        "num_workers": 0,
        "crop_size": 32,
        "resize_size": 36,
        "pipeline": "cached",
        "val_fraction": 0.3,  # 16 validation classes (640 images): a less noisy selection than 0.2's 10 classes
    },
    "model": {
        "method": "dcml",
        "arch": "demo_cnn_normalize",
        "pretrained": "none",
        "embed_dim": 32,
        "features": FOUR_HEADS,
        "compos_num": tune.choice([4, 8]),
        "ensemble_num": tune.randint(2, 7),  # K in 2..6
    },
    "diva": diva_block(
        alpha_ssl=0.1, alpha=0.1, rho=40.0, temperature=0.01, n_key_batches=4, alpha_factor=5.0, rho_factor=40.0
    ),
    "optim": {"lr": log_around(1e-3, 4.0)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice(TAUS), "gamma": tune.uniform(0.1, 0.5)},
    "eval": {"evaltypes": ["paper_cub"], "metrics": ["recall", "nmi"]},
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = {"grace_period": 1, "reduction_factor": 3, "max_t": N_EPOCHS}  # rungs at epochs 1, 3 and 9
DEFAULTS = {"num_samples": 16, "cpus_per_trial": 1, "max_concurrent": 2}
DESCRIPTION = (
    "Embedded demo: DCML + DiVA on rendered glyphs, a small GroupNorm ConvNet at 32 px, 12 epochs; runs on 2 CPU"
    " cores"
)
