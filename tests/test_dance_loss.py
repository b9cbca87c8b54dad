"""DanceLoss against the golden reference values (case 3) and a brute-force loop over (query, key) pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dcml_core.losses import DanceLoss
from tests.golden import load_golden

VARIANTS = [(c, v, t) for c in (1, 2, 3) for v in ("default", "fixed") for t in (0.01, 0.1)]


def _key(case: int, kind: str, variant: str, tau: float) -> str:
    return f"dance_case{case}_{kind}_{variant}_tau{str(tau).replace('.', 'p')}"


def _inputs(case: int, dtype: torch.dtype = torch.float64):
    g = load_golden()
    q = torch.tensor(g[f"dance_case{case}_q"], dtype=dtype, requires_grad=True)
    k = torch.tensor(g[f"dance_case{case}_k"], dtype=dtype)
    queue = torch.tensor(g[f"dance_case{case}_queue"], dtype=dtype)
    return g, q, k, queue


@pytest.mark.parametrize("case,variant,tau", VARIANTS)
def test_golden_float64(case: int, variant: str, tau: float) -> None:
    g, q, k, queue = _inputs(case)
    loss = DanceLoss(temperature=tau, fixed=variant == "fixed")(q, k, queue)
    loss.backward()
    np.testing.assert_allclose(loss.item(), g[_key(case, "loss", variant, tau)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.grad.numpy(), g[_key(case, "grad_q", variant, tau)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case,variant,tau", VARIANTS)
def test_golden_float32(case: int, variant: str, tau: float) -> None:
    g, q, k, queue = _inputs(case, torch.float32)
    loss = DanceLoss(temperature=tau, fixed=variant == "fixed")(q, k, queue)
    loss.backward()
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), g[_key(case, "loss_float32", variant, tau)], rtol=1e-5)
    atol = 5e-5 if tau == 0.01 else 1e-6
    np.testing.assert_allclose(q.grad.numpy(), g[_key(case, "grad_q", variant, tau)], rtol=0, atol=atol)


def test_golden_case3_default_keeps_far_columns_uniform() -> None:
    _, q, _, queue = _inputs(3)
    far_columns = [0, 5, 11, 17]  # orthogonal to every query: d = sqrt(2) > 1.4
    default = DanceLoss(fixed=False).negative_weights(q.detach(), queue)
    fixed = DanceLoss(fixed=True).negative_weights(q.detach(), queue)
    assert torch.equal(default[:, far_columns], torch.full((8, 4), 0.125, dtype=torch.float64))
    assert fixed[:, far_columns].max().item() < 1e-40
    np.testing.assert_allclose(default.sum(dim=0).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(fixed.sum(dim=1).numpy(), 1.0, atol=1e-12)


def _brute_force(q: np.ndarray, k: np.ndarray, queue: np.ndarray, tau: float, fixed: bool) -> float:
    """Explicit loops over queries b and keys j following algorithms.md §2.2.2."""
    batch, dim = q.shape
    n_keys = queue.shape[0]
    log_w = np.zeros((batch, n_keys))
    dist = np.zeros((batch, n_keys))
    for b in range(batch):
        for j in range(n_keys):
            dot = sum(q[b, i] * queue[j, i] for i in range(dim))
            d = max(math.sqrt(max(2 - 2 * dot, 0.0)), 0.5)
            dist[b, j] = d
            log_w[b, j] = (2 - dim) * math.log(d) - (dim - 3) / 2 * math.log(1 - d * d / 4)
    w = np.zeros_like(log_w)
    for b in range(batch):
        for j in range(n_keys):
            ref = log_w[b].max() if fixed else log_w.max()
            w[b, j] = 0.0 if dist[b, j] > 1.4 else math.exp(log_w[b, j] - ref)
            w[b, j] = max(w[b, j], 1e-45)
    total = 0.0
    for b in range(batch):
        norm = [w[b].sum() if fixed else w[:, j].sum() for j in range(n_keys)]
        logits = [float(q[b] @ k[b]) / tau] + [
            float(q[b] @ queue[j]) * w[b, j] / norm[j] / tau for j in range(n_keys)
        ]
        top = max(logits)
        total += -(logits[0] - top - math.log(sum(math.exp(x - top) for x in logits)))
    return total / batch


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_brute_force_random(seed: int, fixed: bool) -> None:
    gen = torch.Generator().manual_seed(seed)

    def unit(n: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(n, 6, generator=gen, dtype=torch.float64), dim=1)

    q, k, queue = unit(5), unit(5), unit(12)
    queue[3] = q[0] * 0.999 + 0.001 * queue[3]  # one close pair, below the lower cutoff
    queue[3] = torch.nn.functional.normalize(queue[3], dim=0)
    loss = DanceLoss(temperature=0.1, fixed=fixed)(q, k, queue)
    expected = _brute_force(q.numpy(), k.numpy(), queue.numpy(), 0.1, fixed)
    np.testing.assert_allclose(loss.item(), expected, rtol=0, atol=1e-12)


def test_weights_are_detached() -> None:
    _, q, k, queue = _inputs(1)
    loss_fn = DanceLoss(temperature=0.1)
    weights = loss_fn.negative_weights(q.detach(), queue)
    logits = torch.cat([(q * k).sum(1, keepdim=True), (q @ queue.t()) * weights], dim=1) / 0.1
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    (grad_expected,) = torch.autograd.grad(expected, q)
    (grad,) = torch.autograd.grad(loss_fn(q, k, queue), q)
    np.testing.assert_allclose(grad.numpy(), grad_expected.numpy(), rtol=0, atol=1e-14)


def test_antipodal_key_is_finite() -> None:
    q = torch.eye(4, dtype=torch.float64)[:2].requires_grad_()
    queue = torch.cat([-torch.eye(4, dtype=torch.float64)[:1], torch.eye(4, dtype=torch.float64)[1:]])
    for fixed in (False, True):
        loss = DanceLoss(fixed=fixed)(q, q.detach(), queue)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(q.grad).all()


def test_bad_inputs() -> None:
    q = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        DanceLoss(temperature=0.0)
    with pytest.raises(ValueError, match="cutoff"):
        DanceLoss(lower_cutoff=1.5, upper_cutoff=1.4)
    with pytest.raises(ValueError, match="q and k"):
        DanceLoss()(q, q[:3], torch.randn(6, 8))
    with pytest.raises(ValueError, match="queue"):
        DanceLoss()(q, q, torch.randn(6, 7))
    with pytest.raises(ValueError, match="queue"):
        DanceLoss()(q, q, torch.randn(0, 8))
