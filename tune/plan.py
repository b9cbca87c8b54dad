"""What a sweep runs, decided in one place: a search over a space, or seed repeats of the best configurations
of an earlier sweep. :func:`plan_sweep` builds the plan from the settings; the plan gives the Tuner its
parameter space, searcher and scheduler, and the validation its configurations; ``plan.settings`` are the
sweep's settings from then on (a repeat sweep's number of trials is that of the configurations found)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import search_spaces
from dcml_core.metric_names import EPOCH
from dcml_core.tracking import OPTUNA_DB
from search_spaces import SearchSpace
from tune.settings import SweepSettings


@dataclass(frozen=True)
class SweepPlan:
    """A search over ``space`` (searched sweeps), or the fixed ``configs`` one trial each (seed repeats: no
    searcher, no early stopping). ``space`` has the sweep's overrides (data root, epochs) applied."""

    space: SearchSpace
    settings: SweepSettings
    configs: tuple[dict[str, Any], ...] = ()

    @property
    def n_epochs(self) -> int:
        """Epochs of the longest trial."""
        return max((c["schedule"]["n_epochs"] for c in self.configs), default=self.space.n_epochs)

    @property
    def param_space(self) -> dict[str, Any]:
        return {} if self.configs else self.space.space

    def searcher(self) -> Any:
        """The configurations in order, seeded Optuna TPE (study in ``<state dir>/optuna.db``), or seeded
        random search; a search starts with the space's baseline (its published configuration)."""
        from ray.tune.search import BasicVariantGenerator

        s = self.settings
        if self.configs:
            from tune.repeats import FixedConfigs

            return FixedConfigs(list(self.configs), self.space.metric, self.space.mode)
        if s.search == "random":
            baseline: dict[str, Any] = {}
            for dotted, value in self.space.baseline.items():
                *parents, leaf = dotted.split(".")
                node = baseline
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
            return BasicVariantGenerator(
                points_to_evaluate=[baseline] if baseline else None, max_concurrent=s.max_concurrent or 0, random_state=s.seed
            )
        import optuna

        from tune.optuna_search import PrunedAwareOptunaSearch, study_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return PrunedAwareOptunaSearch(
            sampler=optuna.samplers.TPESampler(seed=s.seed),
            storage=study_storage(str(s.state_dir / OPTUNA_DB)),
            study_name=s.name,
            max_t=self.n_epochs,
            baseline=self.space.baseline,
        )

    def scheduler(self) -> Any:
        """ASHA on epochs with the space's grace period and reduction factor, which never stops the baseline
        trial (tune/asha.py), or FIFO (no early stopping)."""
        from ray.tune.schedulers import FIFOScheduler

        from tune.asha import BaselineKeepingASHA

        if self.configs or self.settings.scheduler == "fifo":
            return FIFOScheduler()
        return BaselineKeepingASHA(time_attr=EPOCH, baseline=self.space.baseline, **self.space.scheduler)

    def rungs(self) -> list[int]:
        """Epochs at which ASHA compares trials: grace * rf**k below max_t ([] without ASHA)."""
        if self.configs or self.settings.scheduler != "asha":
            return []
        rungs, epoch, s = [], self.space.scheduler["grace_period"], self.space.scheduler
        while epoch < s["max_t"]:
            rungs.append(epoch)
            epoch *= s["reduction_factor"]
        return rungs


def plan_sweep(settings: SweepSettings) -> SweepPlan:
    """The plan of a sweep: its space with ``--data-root`` and ``--max-epochs`` applied and, for a new
    seed-repeat sweep, the ``--repeat-top-k`` best configurations of ``--from`` x seeds ``0..--seeds - 1``
    (read from MLflow). A resumed sweep's trials come back from Tune's state; its plan is the space."""
    space = search_spaces.get(settings.space).with_overrides(settings.data_root, settings.max_epochs)
    if settings.repeat_of is None or settings.resume:
        return SweepPlan(space, settings)
    from tune.repeats import repeat_configs, top_k_configs

    best = top_k_configs(settings.mlflow_uri, settings.repeat_of, settings.repeat_top_k)
    configs = repeat_configs(best, range(settings.repeat_seeds), settings.max_epochs, settings.data_root)
    return SweepPlan(space, dataclasses.replace(settings, num_samples=len(configs)), tuple(configs))
