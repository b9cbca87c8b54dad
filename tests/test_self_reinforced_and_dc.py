"""DCML self-reinforced loss (golden case 5) and the DiVA Deep-Clustering loss / pseudo labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcml_core.losses import DeepClusteringLoss, cluster_pseudo_labels, self_reinforced_loss
from tests.golden import load_golden


@pytest.mark.parametrize("reference_nan", [False, True])
def test_golden_j_reinf_from_recorded_logits(reference_nan: bool) -> None:
    g = load_golden()
    logits = torch.from_numpy(g["dcml_compositor_logits"])  # (M=4, B=6, K=4)
    value = self_reinforced_loss(logits, reference_nan=reference_nan)
    np.testing.assert_allclose(value.item(), g["dcml_J_reinf"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("reference_nan", [False, True])
def test_golden_j_reinf_gradient_on_compositors(reference_nan: bool) -> None:
    g = load_golden()
    z = torch.from_numpy(g["dcml_Z"])  # (B, K*D), the compositors' (detached) input
    weight = torch.tensor(g["dcml_compositor_weight"], requires_grad=True)  # (M, K, K*D)
    bias = torch.tensor(g["dcml_compositor_bias"], requires_grad=True)  # (M, K)
    logits = torch.einsum("bd,mkd->mbk", z, weight) + bias[:, None, :]  # (M, B, K)
    np.testing.assert_allclose(logits.detach().numpy(), g["dcml_compositor_logits"], rtol=0, atol=1e-12)
    self_reinforced_loss(logits, reference_nan=reference_nan).backward()
    np.testing.assert_allclose(
        weight.grad.numpy(), g["dcml_Jreinf_grad_compositor_weight"], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(bias.grad.numpy(), g["dcml_Jreinf_grad_compositor_bias"], rtol=0, atol=1e-12)


def test_extreme_logits_finite_by_default_nan_in_reference_mode() -> None:
    logits = torch.from_numpy(load_golden()["dcml_compositor_logits"]) * 1000
    default = self_reinforced_loss(logits)
    assert torch.isfinite(default) and 0 <= default.item() < 1e-6
    assert torch.isnan(self_reinforced_loss(logits, reference_nan=True))
    assert torch.isnan(self_reinforced_loss(logits.float(), reference_nan=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_brute_force_random(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64) * 2
    expected = 0.0
    for m in range(3):
        per_sample = []
        for b in range(5):
            row = logits[m, b].tolist()
            norm = sum(math.exp(v) for v in row)
            per_sample.append(-math.log(max(math.exp(v) for v in row) / norm))
        expected += sum(per_sample) / 5
    np.testing.assert_allclose(self_reinforced_loss(logits).item(), expected, rtol=0, atol=1e-12)
    as_ce = sum(F.cross_entropy(logits[m], logits[m].argmax(dim=1)) for m in range(3))
    np.testing.assert_allclose(self_reinforced_loss(logits).item(), as_ce.item(), rtol=0, atol=1e-12)


def test_self_reinforced_bad_shape() -> None:
    with pytest.raises(ValueError, match="M compositors"):
        self_reinforced_loss(torch.randn(6, 4))


def test_deep_clustering_loss_brute_force_and_gradient() -> None:
    loss_fn = DeepClusteringLoss(in_features=10, n_clusters=7).double()
    assert loss_fn.classifier.bias is None and loss_fn.classifier.weight.shape == (7, 10)
    feats = torch.randn(5, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 6, 3, 3, 1])
    loss = loss_fn(feats, labels)
    weight = loss_fn.classifier.weight.detach()
    expected = 0.0
    for b in range(5):
        scores = [float(feats[b] @ weight[c]) for c in range(7)]
        expected += -scores[labels[b]] + math.log(sum(math.exp(s) for s in scores))
    np.testing.assert_allclose(loss.item(), expected / 5, rtol=0, atol=1e-12)
    loss.backward()
    assert loss_fn.classifier.weight.grad.abs().sum() > 0


def test_deep_clustering_reset_and_param_groups() -> None:
    loss_fn = DeepClusteringLoss(in_features=256, n_clusters=300)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        loss_fn.reset_parameters()
    weight = loss_fn.classifier.weight
    assert abs(weight.mean().item()) < 3 * (1 / 256) / math.sqrt(weight.numel())
    assert abs(weight.std().item() * 256 - 1.0) < 0.02
    (group,) = loss_fn.param_groups(1e-4)
    assert group["params"] == [weight] and group["lr"] == 1e-4 and group["weight_decay"] == 0.0


def test_deep_clustering_bad_inputs() -> None:
    loss_fn = DeepClusteringLoss(in_features=8, n_clusters=3)
    with pytest.raises(ValueError, match="features"):
        loss_fn(torch.randn(4, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="pseudo_labels"):
        loss_fn(torch.randn(4, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_clusters"):
        DeepClusteringLoss(8, 1)


@pytest.fixture
def single_faiss_thread():
    """Tiny k-means problems run faster without OpenMP threads (and the 2-core machine may be busy)."""
    faiss = pytest.importorskip("faiss")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def _blobs(n_blobs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, 64)) * 10
    truth = np.repeat(np.arange(n_blobs), 30)
    return (centres[truth] + rng.normal(size=(30 * n_blobs, 64))).astype(np.float64), truth


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.usefixtures("single_faiss_thread")
def test_cluster_pseudo_labels_recovers_two_blobs(seed: int) -> None:
    feats, truth = _blobs(2, seed)
    labels = cluster_pseudo_labels(feats, n_clusters=2, pca_dim=8)
    assert labels.shape == (60,) and labels.dtype == np.int64
    assert len(set(labels[truth == 0].tolist())) == 1 and len(set(labels[truth == 1].tolist())) == 1
    assert labels[truth == 0][0] != labels[truth == 1][0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.usefixtures("single_faiss_thread")
def test_cluster_pseudo_labels_are_a_kmeans_fixed_point_in_pca_space(seed: int) -> None:
    feats, _ = _blobs(4, seed)
    labels = cluster_pseudo_labels(feats, n_clusters=4, pca_dim=8)
    assert np.array_equal(labels, cluster_pseudo_labels(feats, n_clusters=4, pca_dim=8))  # deterministic
    centred = feats - feats.mean(axis=0)
    reduced = centred @ np.linalg.svd(centred, full_matrices=False)[2][:8].T  # independent PCA (numpy)
    centroids = np.stack([reduced[labels == c].mean(axis=0) for c in range(4)])
    nearest = ((reduced[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    assert np.array_equal(nearest, labels)


@pytest.mark.usefixtures("single_faiss_thread")
def test_cluster_pseudo_labels_bad_inputs() -> None:
    feats, _ = _blobs(4)
    with pytest.raises(ValueError, match="pca_dim"):
        cluster_pseudo_labels(feats, n_clusters=4, pca_dim=65)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_pseudo_labels(feats, n_clusters=121, pca_dim=8)
    with pytest.raises(ValueError, match="2-D"):
        cluster_pseudo_labels(feats[0], n_clusters=4, pca_dim=8)
    feats[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster_pseudo_labels(feats, n_clusters=4, pca_dim=8)
