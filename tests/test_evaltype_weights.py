"""Post-hoc evaltype weights, the embeddings they are computed from and the views drawn from them.

A freshly built four-head DCML engine (no training needed: the tests check the mechanics, not the quality)
is saved once per module as a checkpoint folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from analysis.embeddings import embed_split, embedding_of, load_engine, recall_at_1, recall_table
from analysis.evaltype_weights import (
    TUNED,
    _starting_points,
    compare_weightings,
    main,
    paper_weightings,
    tune_weights,
)
from analysis.views import RIGHT, WRONG, embedding_map, pick_queries, retrieval_grid
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.evaluation import HEAD_ORDER, combine_heads
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_demo_root):
    cfg = tiny_config(tiny_demo_root, method="dcml", eval={"evaltypes": ["paper_cub"], "metrics": ["recall"]})
    folder = tmp_path_factory.mktemp("weights") / "ckpt"
    Engine(ExperimentConfig.from_dict(cfg), device="cpu").save(folder)
    return folder


@pytest.fixture(scope="module")
def splits(checkpoint):
    engine = load_engine(checkpoint)
    return embed_split(engine, "val"), embed_split(engine, "test")


def brute_recall_at_1(x: np.ndarray, labels: np.ndarray) -> float:
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def test_weight_tuning_never_reads_the_test_split(checkpoint) -> None:
    """The engine embeds val, every tuning trial runs, and only then is test embedded."""
    engine = load_engine(checkpoint)
    events: list[str] = []
    embed = engine.embed

    def spy(split: str):
        events.append(f"embed {split}")
        return embed(split)

    engine.embed = spy
    result = compare_weightings(
        engine, n_trials=6, seed=0, callbacks=[lambda study, trial: events.append("trial")]
    )
    assert events == ["embed val", *["trial"] * 6, "embed test"]
    assert result.table["kind"].iloc[0] == TUNED and result.tuned.heads == HEAD_ORDER


def test_tuned_weights_do_not_depend_on_test_data(checkpoint) -> None:
    """Shuffling the test labels changes test Recall@1 but not what tuning found."""
    engine = load_engine(checkpoint)
    embed = engine.embed
    rng = np.random.default_rng(0)

    def shuffled(split: str):
        heads, labels = embed(split)
        return (
            (heads, labels[torch.as_tensor(rng.permutation(len(labels)))])
            if split == "test"
            else (heads, labels)
        )

    first = compare_weightings(load_engine(checkpoint), n_trials=6, seed=1)
    engine.embed = shuffled
    second = compare_weightings(engine, n_trials=6, seed=1)
    assert first.tuned == second.tuned
    assert first.table["val R@1"].tolist() == second.table["val R@1"].tolist()


def test_tuning_refuses_test_embeddings_and_bad_arguments(splits) -> None:
    val, test = splits
    with pytest.raises(ValueError, match="validation split only"):
        tune_weights(test)
    with pytest.raises(ValueError, match="two or more heads"):
        tune_weights(val, heads=["discriminative"])
    with pytest.raises(ValueError, match="n_trials"):
        tune_weights(val, n_trials=0)


def test_tuned_weights_are_at_least_as_good_on_val_as_the_starting_points(splits) -> None:
    val, _ = splits
    tuned = tune_weights(val, n_trials=10, seed=0)
    assert tuned.weights[0] == 1.0 and len(tuned.weights) == 4
    assert tuned.val_recall_at_1 == pytest.approx(
        recall_at_1(embedding_of(val.heads, tuned.spec), val.labels)
    )
    starts = _starting_points(list(val.heads))
    assert (
        (1.0, 2.0, 2.0, 2.0) in starts and (1.0, 4.0, 4.0, 4.0) in starts and len(starts) == 3
    )  # SOP = equal
    for ratios in starts:
        assert tuned.val_recall_at_1 >= recall_at_1(
            combine_heads(val.heads, list(val.heads), ratios), val.labels
        )
    assert tune_weights(val, n_trials=10, seed=0) == tuned  # seeded


def test_recall_table_matches_brute_force(splits) -> None:
    val, test = splits
    rows = [(h, "head") for h in val.heads] + list(paper_weightings(list(val.heads)).items())
    table = recall_table([val, test], rows)
    assert table["name"].tolist()[:4] == list(HEAD_ORDER) and table["name"].iloc[4] == "combined_0.5-1-1-1"
    assert table["kind"].iloc[4] == "paper CUB (0.5, 1, 1, 1)"
    for _, row in table.iterrows():
        for emb in (val, test):
            x = embedding_of(emb.heads, row["evaltype"]).numpy()
            assert row[f"{emb.split} R@1"] == pytest.approx(brute_recall_at_1(x, emb.labels))


def test_embeddings_follow_the_split_records(checkpoint, splits) -> None:
    engine = load_engine(checkpoint)
    val, test = splits
    assert val.paths == [r.path for r in engine.data.val] and test.paths == [r.path for r in engine.data.test]
    assert test.labels.tolist() == [r.label for r in engine.data.test]
    assert set(val.heads) == set(HEAD_ORDER) and all(h.shape[0] == len(val) for h in val.heads.values())
    with pytest.raises(ValueError, match="'val' or 'test'"):
        embed_split(engine, "train")


def test_retrieval_grid_marks_exactly_the_wrong_neighbours(splits) -> None:
    _, test = splits
    x = embedding_of(test.heads, "discriminative")
    fig = retrieval_grid(test, x, n_queries=4, k=3, seed=2)
    queries = pick_queries(test.labels, 4, seed=2)
    d = ((x.numpy()[:, None] - x.numpy()[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[queries, :3]
    wrong = int((test.labels[nearest] != test.labels[queries][:, None]).sum())
    frames = [p.get_edgecolor() for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == 4 * 4
    assert (
        sum(to_hex(c) == WRONG for c in frames) == wrong
        and sum(to_hex(c) == RIGHT for c in frames) == 12 - wrong
    )
    assert len(set(test.labels[queries])) == 4  # queries from distinct classes
    with pytest.raises(ValueError, match="k must be between"):
        retrieval_grid(test, x, k=len(test))


def test_embedding_map_draws_every_point_by_class(splits) -> None:
    _, test = splits
    fig = embedding_map(test, embedding_of(test.heads, "shared"), max_points=50, seed=0)
    collections = fig.axes[0].collections
    assert sum(len(c.get_offsets()) for c in collections) == 50
    assert len(collections) == len(
        np.unique(test.labels[np.sort(np.random.default_rng(0).choice(len(test), 50, replace=False))])
    )


def test_command_prints_the_comparison_and_writes_csv(checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "weights.csv"
    code = main(["--checkpoint", str(checkpoint), "--n-trials", "4", "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "tuned on val" in captured.out and "paper CUB (0.5, 1, 1, 1)" in captured.out
    assert "discriminative" in captured.out and "test R@1" in captured.out
    import pandas as pd

    table = pd.read_csv(out)
    assert {"kind", "name", "weights", "val R@1", "test R@1", "checkpoint"} <= set(table.columns)
    assert (table["kind"] == "tuned on val").sum() == 1 and (table["kind"] == "head").sum() == 4


def test_command_refuses_bad_input_with_one_line(checkpoint, tmp_path, capsys, tiny_demo_root) -> None:
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text(json.dumps(tiny_config(tiny_demo_root)))  # margin: one head
    (single / "state.pt").write_bytes(b"")  # never read: the configuration is refused first
    cases = [
        (["--checkpoint", str(tmp_path / "nope")], "does not exist"),
        (["--checkpoint", str(tmp_path)], "config.json is missing"),
        (["--checkpoint", str(single)], "weights combine two or more heads"),
        (["--checkpoint", str(checkpoint), "--n-trials", "0"], "--n-trials must be a positive integer"),
        (["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "x")], "--data-root"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("python -m analysis.evaltype_weights: error: ") and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main([])  # --checkpoint or --experiment is required
