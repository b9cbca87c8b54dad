"""Training configuration: optimiser, learning-rate schedule and evaluation protocol."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from dcml_core.config.coerce import check_registered, fail
from dcml_core.head_names import DISCRIMINATIVE

EVERY_EPOCH_METRICS = ("recall",)  # the objective's family: evaluated at every epoch whatever ``full_every``


def due(epoch: int, every: int, last: int, marks: Iterable[int] = ()) -> bool:
    """Whether something periodic happens after ``epoch``: every ``every`` epochs, at the ``marks`` (a sweep's ASHA
    rungs, where trials are compared and stopped) and at the ``last`` epoch. One rule for checkpoints and for the
    full evaluation."""
    return epoch % every == 0 or epoch in marks or epoch == last


def _all_metrics() -> tuple[str, ...]:
    from dcml_core.registry import METRICS  # local: the metrics import numpy

    return METRICS.available()


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (algorithms.md §1.5): Adam with L2 weight decay; criteria get their own groups."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-5
    weight_decay: float = 4e-4
    momentum: float = 0.9  # sgd only

    def validate(self, prefix: str = "optim") -> None:
        if self.lr <= 0:
            fail(f"{prefix}.lr", self.lr, "a learning rate > 0")
        if self.weight_decay < 0:
            fail(f"{prefix}.weight_decay", self.weight_decay, "a number >= 0")


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs and MultiStepLR(tau, gamma), stepped once per epoch after evaluation (algorithms.md §1.5)."""

    n_epochs: int = 150
    tau: tuple[int, ...] = (1000,)
    gamma: float = 0.3

    def validate(self, prefix: str = "schedule") -> None:
        if self.n_epochs < 1:
            fail(f"{prefix}.n_epochs", self.n_epochs, "a positive integer")
        if any(t < 1 for t in self.tau):
            fail(f"{prefix}.tau", self.tau, "epochs >= 1 at which the learning rate is multiplied by gamma")
        if list(self.tau) != sorted(self.tau):
            fail(f"{prefix}.tau", self.tau, "epochs in increasing order")
        if not 0.0 < self.gamma <= 1.0:
            fail(f"{prefix}.gamma", self.gamma, "a decay factor in (0, 1]")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (algorithms.md §5): which embeddings, metrics and when."""

    evaltypes: tuple[str, ...] = (DISCRIMINATIVE,)
    recall_ks: tuple[int, ...] | None = None  # None: (1, 2, 4, 8), SOP (1, 10, 100)
    metrics: tuple[str, ...] = field(default_factory=_all_metrics)  # names from METRICS; default: all
    nmi_k: int | None = None  # None: number of TRAIN classes, as the reference
    test_every: int = 0  # evaluate the test split every N epochs; 0 = only when asked (reporting)
    # evaluate val and test of the starting network before the first step, logged at step/epoch 0: the untrained
    # (demo) or ImageNet-pretrained (real data) reference point; never a candidate for selection
    at_start: bool = True
    batch_size: int | None = None  # None: data.batch_size
    device: str = "auto"  # kNN / k-means device: auto, cpu, cuda
    # Recall@k (the objective) every epoch; the other metrics (NMI and F1 by k-means, mAP_c, MAP@R) every N epochs,
    # at a sweep's ASHA rungs, at the last epoch and at the start (``due``). 1: every metric every epoch
    full_every: int = 1

    def validate(self, prefix: str = "eval") -> None:
        from dcml_core.registry import METRICS

        for m in self.metrics:
            check_registered(f"{prefix}.metrics", m, METRICS)
        if self.recall_ks is not None and (not self.recall_ks or any(k < 1 for k in self.recall_ks)):
            fail(f"{prefix}.recall_ks", self.recall_ks, "positive integers")
        if self.full_every < 1:
            fail(f"{prefix}.full_every", self.full_every, "a positive number of epochs (1: every metric every epoch)")
        if self.test_every < 0:
            fail(f"{prefix}.test_every", self.test_every, "an integer >= 0")
        if not self.evaltypes:
            fail(f"{prefix}.evaltypes", self.evaltypes, "at least one evaltype, e.g. 'discriminative' or 'all'")

    def epoch_metrics(self, full: bool) -> tuple[str, ...]:
        """The metrics of one evaluation: all of ``metrics`` when ``full``, else those computed every epoch."""
        return self.metrics if full else tuple(m for m in self.metrics if m in EVERY_EPOCH_METRICS)

    def resolved_recall_ks(self, dataset: str) -> tuple[int, ...]:
        """Recall@k values: the configured ones, or the reference defaults for the data set."""
        if self.recall_ks is not None:
            return self.recall_ks
        return (1, 10, 100) if dataset == "online_products" else (1, 2, 4, 8)


