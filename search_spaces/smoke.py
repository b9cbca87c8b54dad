"""CI smoke space for the sweep machinery (tests/test_tune_*.py): as small as a real DCML trial can be.

ResNet-18 at 16 px on the demo data, DCML with two heads (discriminative + shared: no MoCo key encoder, so one
forward pass per batch), 8-d embeddings, half the training classes held out for validation and batches of 48
(24 classes: a batch never needs more classes than the 26 training classes of the demo's half), Recall@1 only. An epoch takes a few seconds on one core. Not meant to learn
anything; the tests pass ``--max-epochs`` to choose the number of epochs.
"""

from ray import tune

from dcml_core.metric_names import OBJECTIVE

N_EPOCHS = 3

SPACE = {
    "data": {
        "dataset": "demo",
        "batch_size": 48,
        "samples_per_class": 2,
        "num_workers": 0,
        "val_fraction": 0.5,
        "crop_size": 16,
        "resize_size": 18,
        "verify_images": False,
    },
    "model": {
        "method": "dcml",
        "arch": "resnet18_frozen_normalize",
        "pretrained": "none",
        "embed_dim": 8,
        "features": ["discriminative", "shared"],
        "compos_num": tune.choice([2, 4]),
        "ensemble_num": tune.randint(2, 4),
    },
    "diva": {"alpha_shared": tune.uniform(0.1, 0.5)},
    "optim": {"lr": tune.loguniform(1e-4, 1e-3)},
    "schedule": {"n_epochs": N_EPOCHS, "tau": tune.choice([1, 2]), "gamma": tune.uniform(0.1, 0.5)},
    "eval": {"evaltypes": ["discriminative"], "metrics": ["recall"], "recall_ks": [1], "batch_size": 256},
    "checkpoint_every": 1,  # the fault and resume tests restore from the epoch before
}
METRIC = OBJECTIVE
MODE = "max"
SCHEDULER = {"grace_period": 1, "reduction_factor": 2, "max_t": N_EPOCHS}
DEFAULTS = {"num_samples": 4, "cpus_per_trial": 1, "max_concurrent": 2}
DESCRIPTION = "CI smoke space: tiny DCML (2 heads) on the demo data, ResNet-18 at 16 px, seconds per epoch"
