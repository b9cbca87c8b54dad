"""Evaltypes (algorithms.md §2.5): parsing, expansion of 'all'/paper weightings, keys, combined embeddings."""

from __future__ import annotations

import re

import faiss
import numpy as np
import pytest
import torch

from dcml_core.evaluation import (
    ALL_WEIGHTS,
    HEAD_ORDER,
    PAPER_WEIGHTS,
    combine_heads,
    compute_metrics,
    evaltype_key,
    expand_evaltypes,
    parse_evaltype,
)
from tests.golden import load_golden

FOUR = list(HEAD_ORDER)
MLFLOW_NAME = re.compile(r"^[/\w.\- :]*$")  # characters MLflow 3 accepts in metric names


def test_parse_single_and_combined() -> None:
    assert parse_evaltype("discriminative") == (["discriminative"], [1.0])
    names, weights = parse_evaltype("Combined_discriminative_selfsimilarity_shared_intra-0.5-1-1-1")
    assert names == FOUR and weights == [0.5, 1.0, 1.0, 1.0]
    assert parse_evaltype("Combined_discriminative_shared-0.75-1.25") == (
        ["discriminative", "shared"],
        [0.75, 1.25],
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "non-empty"),
        ("Combined_discriminative_shared-1", "2 heads but 1 weights"),
        ("Combined_discriminative_shared-1-x", "weights must be numbers"),
        ("Combined_discriminative_shared-1-0", "finite and positive"),
        ("Combined_discriminative_discriminative-1-1", "distinct"),
        ("Combined__shared-1-1", "distinct, letters and digits"),
        ("Combined-discriminative-1", "neither a head name"),
        ("Sum_discriminative_shared-1-1", "neither a head name"),
        ("disc riminative", "neither a head name"),
    ],
)
def test_parse_rejects_malformed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_evaltype(spec)


def test_combine_heads_formula() -> None:
    rng = np.random.default_rng(0)
    heads = {
        n: torch.from_numpy(rng.standard_normal((7, 4 + i)).astype(np.float32)) for i, n in enumerate(FOUR)
    }
    weights = (0.5, 2.0, 1.0, 1.5)
    out = combine_heads(heads, FOUR, weights)
    parts = [
        w * h.numpy() / np.linalg.norm(h.numpy(), axis=1, keepdims=True)
        for w, h in zip(weights, heads.values())
    ]
    expected = np.concatenate(parts, axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert out.shape == (7, 4 + 5 + 6 + 7)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(torch.linalg.norm(out, dim=1).numpy(), 1.0, atol=1e-6)
    single = combine_heads({"shared": heads["shared"]}, ["shared"], [3.0])  # n(3 n(h)) = n(h)
    np.testing.assert_allclose(single.numpy(), parts[2] / 1.0, atol=1e-6)


def test_combine_heads_errors_list_available_heads() -> None:
    heads = {"discriminative": torch.ones(3, 2), "shared": torch.ones(3, 2)}
    with pytest.raises(
        ValueError, match=r"unknown head\(s\) \['intra'\]; available heads: \['discriminative', 'shared'\]"
    ):
        combine_heads(heads, ["discriminative", "intra"], [1, 1])
    with pytest.raises(ValueError, match="one weight per head"):
        combine_heads(heads, ["discriminative", "shared"], [1])
    with pytest.raises(ValueError, match="equal rows"):
        combine_heads({"a": torch.ones(3, 2), "b": torch.ones(4, 2)}, ["a", "b"], [1, 1])


def test_expand_all_per_feature_count_and_dataset() -> None:
    assert expand_evaltypes(["all"], FOUR, "cub200") == [
        "Combined_discriminative_selfsimilarity_shared_intra-0.75-1.25-1.25-1.25",
        "Combined_discriminative_selfsimilarity_shared_intra-0.5-1-1-1",
        "Combined_discriminative_selfsimilarity_shared_intra-0.5-1.5-1.5-1.5",
    ]
    sop = expand_evaltypes(["all"], FOUR, "online_products")
    assert [parse_evaltype(s)[1] for s in sop] == [
        [1, 1, 1, 1],
        [0.5, 1, 1, 1],
        [1, 0.5, 0.5, 0.5],
        [1.5, 1, 1, 1],
    ]
    two = expand_evaltypes(["all"], ["discriminative", "shared"], "online_products")
    assert two == ["Combined_discriminative_shared-1-0.5", "Combined_discriminative_shared-0.5-1"]
    three = expand_evaltypes(["all"], ["discriminative", "selfsimilarity", "shared"], "cars196")
    assert [tuple(parse_evaltype(s)[1]) for s in three] == list(ALL_WEIGHTS[3])
    assert expand_evaltypes(["all"], ["discriminative"], "cub200") == ["discriminative"]
    with pytest.raises(ValueError, match="1 to 4 features"):
        expand_evaltypes(["all"], [*FOUR, "dc"], "cub200")


def test_expand_paper_weightings_order_and_dedup() -> None:
    cub = "Combined_discriminative_selfsimilarity_shared_intra-0.5-1-1-1"
    assert expand_evaltypes(["paper_cub"], FOUR, "demo") == [cub]
    assert expand_evaltypes(["paper_cars"], FOUR, "demo") == [
        "Combined_discriminative_selfsimilarity_shared_intra-0.5-2-2-2"
    ]
    assert expand_evaltypes(["paper"], FOUR, "online_products") == [
        "Combined_discriminative_selfsimilarity_shared_intra-1-1-1-1"
    ]
    # the primary stays first; duplicates (also in non-canonical spelling) are dropped
    assert expand_evaltypes(
        ["discriminative", "paper", cub.replace("-1-1-1", "-1.0-1-1.00"), "all"], FOUR, "cub200"
    )[:3] == [
        "discriminative",
        cub,
        "Combined_discriminative_selfsimilarity_shared_intra-0.75-1.25-1.25-1.25",
    ]
    assert len(expand_evaltypes(["paper", "all"], FOUR, "cub200")) == 3
    with pytest.raises(ValueError, match="'paper' weightings exist for"):
        expand_evaltypes(["paper"], FOUR, "demo")
    with pytest.raises(ValueError, match=r"\['shared', 'intra'\] are not among"):
        expand_evaltypes(["paper_sop"], ["discriminative", "selfsimilarity"], "online_products")
    assert set(PAPER_WEIGHTS) == {"paper_cub", "paper_cars", "paper_sop"}


def test_expand_rejects_unknown_heads_listing_available() -> None:
    with pytest.raises(
        ValueError, match=r"unknown head\(s\) \['intra'\]; available heads: \['discriminative', 'shared'\]"
    ):
        expand_evaltypes(["Combined_discriminative_intra-1-1"], ["discriminative", "shared"], "cub200")
    with pytest.raises(ValueError, match="available heads"):
        expand_evaltypes(["selfsimilarity"], ["discriminative"], "cub200")


def test_evaltype_keys_short_unique_and_mlflow_safe() -> None:
    assert evaltype_key("discriminative") == "discriminative"
    assert (
        evaltype_key("Combined_discriminative_selfsimilarity_shared_intra-0.5-1-1-1") == "combined_0.5-1-1-1"
    )
    assert evaltype_key("Combined_discriminative_shared-1-0.5") == "combined_discriminative_shared_1-0.5"
    specs = expand_evaltypes(["all", "paper_cars", "discriminative", "shared"], FOUR, "online_products")
    specs += expand_evaltypes(["all"], ["discriminative", "shared"], "cub200")
    keys = [evaltype_key(s) for s in specs]
    assert len(set(keys)) == len(keys)
    assert all(MLFLOW_NAME.match(f"val/{k}/map_at_r") for k in keys)


def test_golden_combined_evaltype() -> None:
    g = load_golden()
    heads = {"discriminative": torch.from_numpy(g["metrics_features"])}
    heads |= {n: torch.from_numpy(g[f"metrics_head_{n}"]) for n in ("selfsimilarity", "shared", "intra")}
    names, weights = parse_evaltype("Combined_discriminative_selfsimilarity_shared_intra-0.5-1-1-1")
    expected = g["metrics_combined_features"]
    np.testing.assert_array_equal(
        combine_heads(heads, names, weights, normalize_heads=False).numpy(), expected
    )
    emb = combine_heads(heads, names, weights)  # re-normalising unit heads moves features by <= 1 ulp
    np.testing.assert_allclose(emb.numpy(), expected, rtol=0, atol=1e-7)
    out = compute_metrics(
        emb,
        g["metrics_labels"],
        nmi_k=int(g["metrics_n_classes_kmeans"]),
        metrics=("recall", "map_c", "nmi", "f1"),
    )
    golden = {f"recall@{k}": float(g[f"metrics_combined_e_recall_at_{k}"]) for k in (1, 2, 4, 8)}
    golden["map_c"] = float(g["metrics_combined_mAP_c"])
    assert {k: out[k] for k in golden} == golden
    # faiss's k-means: the same partition for every faiss-cpu release setup.cfg admits (see test_metrics.py)
    assert (out["nmi"], out["f1"]) == (float(g["metrics_combined_nmi"]), float(g["metrics_combined_f1"])), (
        f"faiss {faiss.__version__}"
    )
