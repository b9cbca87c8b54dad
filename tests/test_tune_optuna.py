"""PrunedAwareOptunaSearch against Ray's OptunaSearch, driven the way Tune's controller drives a searcher."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from dcml_core.metric_names import OBJECTIVE
from tune.optuna_search import PrunedAwareOptunaSearch, study_storage

SPACE = {"optim": {"lr": tune.loguniform(1e-4, 1e-2)}, "model": {"compos_num": tune.choice([4, 8])}}


def _searcher(cls, tmp_path, **kwargs):
    kw = {"max_t": 4} if cls is PrunedAwareOptunaSearch else {}
    searcher = cls(
        sampler=optuna.samplers.TPESampler(seed=0),
        storage=study_storage(str(tmp_path / "optuna.db")),
        study_name="s",
        **kw,
        **kwargs,
    )
    assert searcher.set_search_properties(OBJECTIVE, "max", SPACE)
    return searcher


def _run(searcher, trial_id: str, values: list[float], stopped: bool, error: bool = False) -> None:
    """Tune's order: on_trial_result for every result but the one the scheduler stops on, then complete."""
    config = searcher.suggest(trial_id)
    assert set(config) == {"optim", "model"}
    for epoch, value in enumerate(values, start=1):
        result = {OBJECTIVE: value, "epoch": epoch, "training_iteration": epoch}
        if epoch < len(values) or not stopped:
            searcher.on_trial_result(trial_id, result)
    if error:
        searcher.on_trial_complete(trial_id, error=True)
    else:
        searcher.on_trial_complete(trial_id, result=result)


def _states(tmp_path) -> list[tuple[str, float | None, dict]]:
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    return [(t.state.name, t.value, t.intermediate_values) for t in study.trials]


def test_rays_adapter_tells_a_stopped_trial_complete(tmp_path) -> None:
    """What this module fixes (ecosystem.md §1.4): a trial ASHA stopped at epoch 1 counts as final."""
    searcher = _searcher(OptunaSearch, tmp_path)
    _run(searcher, "a", [0.3], stopped=True)
    assert _states(tmp_path) == [("COMPLETE", 0.3, {})]


def test_stopped_trials_are_pruned_with_their_intermediate_values(tmp_path) -> None:
    searcher = _searcher(PrunedAwareOptunaSearch, tmp_path)
    _run(searcher, "a", [0.3], stopped=True)  # stopped at the first rung
    _run(searcher, "b", [0.2, 0.4], stopped=True)  # stopped at the second
    _run(searcher, "c", [0.1, 0.2, 0.3, 0.5], stopped=True)  # ASHA stops every trial at max_t: complete
    _run(searcher, "d", [0.1, 0.2, 0.35, 0.45], stopped=False)  # the function returned after its last epoch
    _run(searcher, "e", [0.1], stopped=False, error=True)
    assert _states(tmp_path) == [
        ("PRUNED", 0.3, {1: 0.3}),
        ("PRUNED", 0.4, {1: 0.2, 2: 0.4}),
        ("COMPLETE", 0.5, {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.5}),
        ("COMPLETE", 0.45, {1: 0.1, 2: 0.2, 3: 0.35, 4: 0.45}),
        ("FAIL", None, {1: 0.1}),
    ]


def test_repeated_epochs_after_a_restore_are_reported_once(tmp_path) -> None:
    searcher = _searcher(PrunedAwareOptunaSearch, tmp_path)
    searcher.suggest("a")
    for epoch, value in [(1, 0.1), (2, 0.2), (2, 0.25), (3, 0.3)]:  # epoch 2 re-delivered after a restore
        searcher.on_trial_result("a", {OBJECTIVE: value, "epoch": epoch})
    searcher.on_trial_complete("a", result={OBJECTIVE: 0.3, "epoch": 3})
    searcher.on_trial_complete("a", result={OBJECTIVE: 0.3, "epoch": 3})  # a second completion is ignored
    assert _states(tmp_path) == [("PRUNED", 0.3, {1: 0.1, 2: 0.2, 3: 0.3})]


def test_searcher_state_survives_save_and_restore(tmp_path) -> None:
    """Tune pickles the searcher into the sweep folder; the restored one continues the same study."""
    searcher = _searcher(PrunedAwareOptunaSearch, tmp_path)
    _run(searcher, "a", [0.3], stopped=True)
    searcher.suggest("b")
    searcher.on_trial_result("b", {OBJECTIVE: 0.2, "epoch": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = PrunedAwareOptunaSearch(max_t=4)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("b", {OBJECTIVE: 0.2, "epoch": 1})  # already reported before the crash
    restored.on_trial_complete("b", result={OBJECTIVE: 0.25, "epoch": 4})
    assert [s[0] for s in _states(tmp_path)] == ["PRUNED", "COMPLETE"]
    assert _states(tmp_path)[1][2] == {1: 0.2, 4: 0.25}


@pytest.mark.parametrize("value", [float("nan"), None])
def test_a_final_result_without_a_usable_value_is_pruned_not_complete(value) -> None:
    searcher = PrunedAwareOptunaSearch(max_t=4)
    searcher._metric = OBJECTIVE
    state, told = searcher.final_state({OBJECTIVE: value, "epoch": 4}, error=False)
    assert (state, told) == (TrialState.PRUNED, None)
    assert searcher.final_state({OBJECTIVE: 0.5, "epoch": 4}, error=True) == (TrialState.FAIL, None)


BASELINE = {"optim.lr": 1e-3, "model.compos_num": 4}


def test_the_baseline_is_the_first_trial_and_is_enqueued_once(tmp_path) -> None:
    searcher = _searcher(PrunedAwareOptunaSearch, tmp_path, baseline=BASELINE)
    assert searcher.suggest("a") == {"optim": {"lr": 1e-3}, "model": {"compos_num": 4}}
    searcher.on_trial_complete("a", result={OBJECTIVE: 0.3, "epoch": 4})
    second = searcher.suggest("b")
    assert second != {"optim": {"lr": 1e-3}, "model": {"compos_num": 4}}
    # a resumed sweep sets the study up again: the baseline, already in the study, is not enqueued twice
    again = _searcher(PrunedAwareOptunaSearch, tmp_path, baseline=BASELINE)
    again.suggest("c")
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    marked = [t.number for t in study.trials if t.user_attrs.get("dcml_baseline")]
    assert marked == [0] and study.trials[2].params != study.trials[0].params


def test_a_collapsed_trial_is_infeasible_not_a_low_score(tmp_path) -> None:
    searcher = _searcher(PrunedAwareOptunaSearch, tmp_path)
    _run(searcher, "a", [0.3, 0.5, 0.6, 0.7], stopped=False)
    searcher.suggest("b")
    searcher.on_trial_result("b", {OBJECTIVE: 0.2, "epoch": 1})
    searcher.on_trial_complete("b", result={OBJECTIVE: 0.02, "epoch": 2, "collapsed": 1.0})
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    good, collapsed = study.trials
    assert good.constraints == {} and collapsed.constraints == {"embedding_collapse": 1.0}
    assert collapsed.state == TrialState.PRUNED  # ended before its last epoch; TPE ranks it below feasible ones
