"""Miners: golden probabilities (case 2), brute force, invariants and empirical sampling frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcml_core.miners import (
    DistanceWeightedMiner,
    IntraRandomMiner,
    LabelPermutationMiner,
    RhoDistanceMiner,
    SharedStandardMiner,
    negative_distribution,
    pairwise_distances,
)
from tests.golden import load_golden

GOLDEN_CASES = {
    1: "distminer_case1_embeddings",
    2: "distminer_case1_embeddings",
    3: "distminer_case3_embeddings",
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The sampling tests make thousands of tiny calls: intra-op threads only add contention there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _golden_inputs(case: int, dtype=torch.float64):
    g = load_golden()
    emb = torch.tensor(g[GOLDEN_CASES[case]], dtype=dtype)
    return g, emb, torch.from_numpy(g[f"distminer_case{case}_labels"])


def _random_batch(seed: int, batch: int = 16, dim: int = 8, n_classes: int = 5):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    return emb, torch.randint(n_classes, (batch,), generator=gen)


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson chi^2 and degrees of freedom; bins with expected count < 5 are pooled."""
    n = counts.sum()
    expected = n * probs
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()), int(keep.sum() - 1)


def test_pairwise_distances_match_golden() -> None:
    g, emb, _ = _golden_inputs(1)
    np.testing.assert_allclose(
        pairwise_distances(emb).numpy(), g["distminer_case1_pdist"], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("case", [1, 2, 3])
def test_golden_probabilities_anchors_candidates(case: int) -> None:
    g, emb, labels = _golden_inputs(case)
    miner = DistanceWeightedMiner()
    probs, anchor_mask = miner.negative_probabilities(emb, labels)
    assert probs.dtype == torch.float64
    np.testing.assert_allclose(
        probs.numpy(), g[f"distminer_case{case}_neg_probabilities"], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(
        anchor_mask.nonzero().squeeze(1).numpy(), g[f"distminer_case{case}_anchors"]
    )
    if case != 3:
        expected = g[f"distminer_case{case}_positive_candidates"]
        np.testing.assert_array_equal(miner.positive_candidates(labels).numpy(), expected)


@pytest.mark.parametrize("case", [1, 3])
def test_golden_probabilities_float32(case: int) -> None:
    g, emb, labels = _golden_inputs(case, torch.float32)
    probs, _ = DistanceWeightedMiner().negative_probabilities(emb, labels)
    assert probs.dtype == torch.float32
    np.testing.assert_allclose(probs.numpy(), g[f"distminer_case{case}_neg_probabilities"], rtol=0, atol=1e-5)


def test_golden_case1_upper_cutoff_not_applied_and_pole_row() -> None:
    g, emb, labels = _golden_inputs(1)
    probs, _ = DistanceWeightedMiner().negative_probabilities(emb, labels)
    far = (g["distminer_case1_pdist"] > 1.4) & (labels[:, None] != labels[None, :]).numpy()
    assert far.sum() == 56 and (probs.numpy()[far] > 0).all()
    assert probs[0, 15].item() > 0.99999 and probs[1, 15].item() > 0.99998  # d = 1.978: near the pole


def _brute_force_probs(emb: np.ndarray, labels: np.ndarray, lower: float = 0.5) -> np.ndarray:
    """Per-anchor loop following algorithms.md §1.3 in numpy."""
    batch, dim = emb.shape
    out = np.zeros((batch, batch))
    for i in range(batch):
        same = labels == labels[i]
        if same.sum() < 2:
            continue
        d = np.maximum(np.linalg.norm(emb - emb[i], axis=1), lower)
        log_w = (2.0 - dim) * np.log(d) - (dim - 3) / 2 * np.log(1.0 - d**2 / 4)
        log_w[same] = 0.0
        w = np.exp(log_w - log_w.max())
        w[same] = 0.0
        out[i] = w / w.sum()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_probabilities_brute_force_random(seed: int) -> None:
    emb, labels = _random_batch(seed)
    probs, mask = DistanceWeightedMiner().negative_probabilities(emb, labels)
    expected = _brute_force_probs(emb.numpy(), labels.numpy())
    np.testing.assert_allclose(probs.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(mask.numpy(), expected.sum(axis=1) > 0)


def _check_distance_triplets(a, p, n, labels, anchor_mask) -> None:
    assert a.dtype == p.dtype == n.dtype == torch.long
    np.testing.assert_array_equal(a.numpy(), anchor_mask.nonzero().squeeze(1).numpy())
    assert torch.equal(labels[a], labels[p]) and bool((a != p).all()) and bool((labels[n] != labels[a]).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_miner_invariants(seed: int) -> None:
    emb, labels = _random_batch(seed, batch=24, n_classes=9)
    miner = DistanceWeightedMiner()
    _, mask = miner.negative_probabilities(emb, labels)
    a, p, n = miner(emb, labels, torch.Generator().manual_seed(seed))
    _check_distance_triplets(a, p, n, labels, mask)


def test_distance_miner_empirical_negative_frequencies() -> None:
    g, emb, labels = _golden_inputs(3)  # dimension 8: flat distributions
    miner, gen, draws = DistanceWeightedMiner(), torch.Generator().manual_seed(123), 1000
    counts = np.zeros((16, 16))
    for _ in range(draws):
        a, _, n = miner(emb, labels, gen)
        np.add.at(counts, (a.numpy(), n.numpy()), 1)
    probs = g["distminer_case3_neg_probabilities"]
    assert counts[probs == 0].sum() == 0  # same-class samples are never negatives
    stats = [_chi_square(counts[i], probs[i]) for i in range(16)]
    chi2, dof = sum(s[0] for s in stats), sum(s[1] for s in stats)
    assert dof > 100 and chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    empirical = counts / draws
    assert np.abs(empirical - probs).max() < 4 * np.sqrt(0.25 / draws)


def test_distance_miner_uniform_positive_in_class_of_three() -> None:
    g, emb, labels = _golden_inputs(2)
    trio = np.flatnonzero(np.bincount(labels.numpy())[labels.numpy()] == 3)
    assert len(trio) == 3 and 0 not in g["distminer_case2_anchors"]
    gen, counts, draws = torch.Generator().manual_seed(7), np.zeros((16, 16)), 500
    for _ in range(draws):
        a, p, _ = DistanceWeightedMiner()(emb, labels, gen)
        assert 0 not in a.tolist()  # the singleton never anchors ...
        np.add.at(counts, (a.numpy(), p.numpy()), 1)
    for i in trio:
        others = [j for j in trio if j != i]
        assert counts[i].sum() == draws and counts[i, others].sum() == draws
        assert abs(counts[i, others[0]] / draws - 0.5) < 4 * np.sqrt(0.25 / draws)


def test_antipodal_pole_is_finite() -> None:
    emb = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    )
    emb = emb.double()
    labels = torch.tensor([0, 0, 1, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(_brute_force_probs(emb.numpy(), labels.numpy())[0]).any()  # the reference formula
    probs, mask = DistanceWeightedMiner().negative_probabilities(emb, labels)
    assert torch.isfinite(probs).all() and mask.tolist() == [True, True, False, False]
    assert probs[0, 2].item() == pytest.approx(1.0) and probs[0].sum().item() == pytest.approx(1.0)


def test_no_anchor_edge_cases() -> None:
    miner, emb = DistanceWeightedMiner(), torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):  # no partners / no negatives
        a, p, n = miner(emb, labels)
        assert a.numel() == p.numel() == n.numel() == 0 and a.dtype == torch.long
    probs, mask = miner.negative_probabilities(emb, torch.tensor([5, 5, 5, 5]))
    assert not mask.any() and torch.count_nonzero(probs) == 0


def test_apply_upper_cutoff_option() -> None:
    emb, labels = _random_batch(4, batch=20, n_classes=6)
    dist = pairwise_distances(emb)
    probs, mask = DistanceWeightedMiner(apply_upper_cutoff=True).negative_probabilities(emb, labels)
    negatives = labels[None, :] != labels[:, None]
    for i in mask.nonzero().squeeze(1).tolist():
        near = negatives[i] & (dist[i] <= 1.4)
        assert probs[i].sum().item() == pytest.approx(1.0)
        if near.any():
            assert torch.count_nonzero(probs[i][~near]) == 0
        else:  # every negative is beyond the cutoff: uniform fallback over negatives
            np.testing.assert_allclose(probs[i][negatives[i]].numpy(), 1.0 / negatives[i].sum().item())
    # A row whose negatives are all beyond 1.4 falls back to uniform.
    far = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-0.99, 0.141]], dtype=torch.float64)
    probs, _ = DistanceWeightedMiner(apply_upper_cutoff=True).negative_probabilities(
        far, torch.tensor([0, 0, 1, 2])
    )
    np.testing.assert_allclose(probs[0].numpy(), [0.0, 0.0, 0.5, 0.5])


def test_label_permutation_miner_equals_base_on_permuted_labels() -> None:
    emb, labels = _random_batch(5, batch=16, n_classes=8)
    miner = LabelPermutationMiner(DistanceWeightedMiner())
    gen = torch.Generator().manual_seed(11)
    state = gen.get_state()
    a, p, n = miner(emb, labels, gen)
    gen.set_state(state)
    permuted = labels[torch.randperm(16, generator=gen)]
    a2, p2, n2 = DistanceWeightedMiner()(emb, permuted, gen)
    assert torch.equal(a, a2) and torch.equal(p, p2) and torch.equal(n, n2)
    _, mask = DistanceWeightedMiner().negative_probabilities(emb, permuted)
    _check_distance_triplets(a, p, n, permuted, mask)


def test_label_permutation_miner_pairs_across_true_classes() -> None:
    emb, labels = _random_batch(6, batch=16, n_classes=8)
    gen, cross = torch.Generator().manual_seed(0), 0
    for _ in range(50):
        a, p, _ = LabelPermutationMiner()(emb, labels, gen)
        assert bool((a != p).all())
        cross += int((labels[a] != labels[p]).sum())
    assert cross > 0  # positives follow the permuted, not the true, labels


def test_shared_standard_miner_invariants_and_negative_distribution() -> None:
    emb, _ = _random_batch(8, batch=12)
    labels = torch.tensor([0, 1, 2, 3] * 3)
    miner, gen, draws = SharedStandardMiner(), torch.Generator().manual_seed(3), 600
    probs, _ = negative_distribution(emb, labels, 0.5)
    counts = np.zeros((12, 12))
    for _ in range(draws):
        a, p, n = miner(emb, labels, gen)
        assert a.tolist() == list(range(12))  # every sample is an anchor (4 classes present)
        assert bool((labels[n] != labels[a]).all())
        assert bool((labels[p] != labels[a]).all()) and bool((labels[p] != labels[n]).all())
        np.add.at(counts, (a.numpy(), n.numpy()), 1)
    stats = [_chi_square(counts[i], probs[i].numpy()) for i in range(12)]
    chi2, dof = sum(s[0] for s in stats), sum(s[1] for s in stats)
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


def test_shared_standard_miner_drops_anchors_without_third_class() -> None:
    emb, _ = _random_batch(9, batch=6)
    a, p, n = SharedStandardMiner()(emb, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert a.numel() == p.numel() == n.numel() == 0


def test_intra_random_miner_class_and_member_frequencies() -> None:
    labels = torch.tensor([3, 3, 7, 9, 9, 9, 9, 9])  # class sizes 2, 1, 5
    emb = torch.randn(8, 4)
    gen, draws = torch.Generator().manual_seed(5), 1600
    class_counts, member_counts, degenerate = {3: 0, 7: 0, 9: 0}, np.zeros(8), 0
    for _ in range(draws // 8):
        a, p, n = IntraRandomMiner()(emb, labels, gen)
        assert a.shape == p.shape == n.shape == (8,)
        assert torch.equal(labels[a], labels[p]) and torch.equal(labels[a], labels[n])
        for c in labels[a].tolist():
            class_counts[c] += 1
        np.add.at(member_counts, torch.cat([a, p, n]).numpy(), 1)
        degenerate += int((a == p).sum())
    total = sum(class_counts.values())
    for c in class_counts:  # classes uniform regardless of their size
        assert abs(class_counts[c] / total - 1 / 3) < 4 * np.sqrt(2 / 9 / total)
    # Members uniform within their class: compare the two members of class 3 and the five of class 9.
    assert abs(member_counts[0] / member_counts[:2].sum() - 0.5) < 0.06
    assert np.abs(member_counts[3:] / member_counts[3:].sum() - 0.2).max() < 0.04
    assert degenerate > 0


def test_rho_distance_miner() -> None:
    emb, labels = _random_batch(10, batch=16, n_classes=5)
    _, mask = DistanceWeightedMiner().negative_probabilities(emb, labels)
    a, p, n = RhoDistanceMiner(contrastive_p=0.0)(emb, labels, torch.Generator().manual_seed(0))
    _check_distance_triplets(a, p, n, labels, mask)
    a, p, n = RhoDistanceMiner(contrastive_p=1.0)(emb, labels, torch.Generator().manual_seed(0))
    assert torch.equal(a, p) and torch.equal(labels[n], labels[a]) and bool((n != a).all())
    gen, flipped, total = torch.Generator().manual_seed(1), 0, 0
    for _ in range(100):
        a, p, _ = RhoDistanceMiner(contrastive_p=0.3)(emb, labels, gen)
        flipped, total = flipped + int((a == p).sum()), total + a.numel()
    assert abs(flipped / total - 0.3) < 4 * np.sqrt(0.21 / total)


def test_miner_bad_inputs() -> None:
    with pytest.raises(ValueError, match="lower_cutoff"):
        DistanceWeightedMiner(lower_cutoff=0.0)
    with pytest.raises(ValueError, match="upper_cutoff"):
        DistanceWeightedMiner(lower_cutoff=1.0, upper_cutoff=0.5)
    with pytest.raises(ValueError, match="probability"):
        RhoDistanceMiner(contrastive_p=1.5)
    with pytest.raises(TypeError, match="DistanceWeightedMiner"):
        LabelPermutationMiner(SharedStandardMiner())
    for miner in (
        DistanceWeightedMiner(),
        LabelPermutationMiner(),
        SharedStandardMiner(),
        IntraRandomMiner(),
    ):
        with pytest.raises(ValueError, match="labels"):
            miner(torch.randn(4, 3), torch.tensor([0, 1, 2]))
        with pytest.raises(ValueError, match="embeddings"):
            miner(torch.randn(4), torch.tensor([0, 1, 2, 3]))
