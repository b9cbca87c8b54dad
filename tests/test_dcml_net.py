"""DCMLNet against the golden case 5 (the authors' compiled module) and brute-force composites."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcml_core.models import DCMLNet
from tests.golden import load_golden

DIVA = ("discriminative", "selfsimilarity", "shared", "intra")


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    with load_golden() as data:
        return {k: torch.from_numpy(data[k]) for k in data.files if k.startswith("dcml_")}


def load_reference_weights(
    net: DCMLNet, ens_w: torch.Tensor, ens_b: torch.Tensor, comp_w: torch.Tensor, comp_b: torch.Tensor
) -> None:
    """Copy per-layer reference weights (K, D, F), (K, D), (M, K, K*D), (M, K) into the fused layers."""
    with torch.no_grad():
        net.ensemble.weight.copy_(ens_w.reshape(-1, ens_w.shape[-1]))
        net.ensemble.bias.copy_(ens_b.reshape(-1))
        net.compositors.weight.copy_(comp_w.reshape(-1, comp_w.shape[-1]))
        net.compositors.bias.copy_(comp_b.reshape(-1))


def _golden_net(g: dict[str, torch.Tensor]) -> DCMLNet:
    net = DCMLNet(nn.Identity(), 2048, embed_dim=8, ensemble_num=4, compos_num=4, features=DIVA).double()
    load_reference_weights(
        net,
        g["dcml_ensemble_weight"],
        g["dcml_ensemble_bias"],
        g["dcml_compositor_weight"],
        g["dcml_compositor_bias"],
    )
    return net.train()


def test_golden_forward(golden) -> None:
    net = _golden_net(golden)
    f = golden["dcml_f"].clone()
    heads, f_out, aux = net(f)
    assert torch.equal(f_out, f)
    for name in DIVA:
        torch.testing.assert_close(heads[name], golden[f"dcml_head_{name}"], rtol=0, atol=1e-12)
    torch.testing.assert_close(aux["subembeddings"], golden["dcml_Z"], rtol=0, atol=1e-12)
    torch.testing.assert_close(aux["compositor_logits"], golden["dcml_compositor_logits"], rtol=0, atol=1e-12)


def test_golden_probe_gradients(golden) -> None:
    net = _golden_net(golden)
    f = golden["dcml_f"].clone().requires_grad_(True)
    heads, _, _ = net(f)
    probe = sum((heads[name] * golden["dcml_probe_G"][m]).sum() for m, name in enumerate(DIVA))
    torch.testing.assert_close(probe, golden["dcml_probe_value"], rtol=0, atol=1e-12)
    probe.backward()
    k, d, n_in = golden["dcml_ensemble_weight"].shape
    grads = {
        "ensemble_weight": net.ensemble.weight.grad.reshape(k, d, n_in),
        "ensemble_bias": net.ensemble.bias.grad.reshape(k, d),
        "compositor_weight": net.compositors.weight.grad.reshape(4, k, k * d),
        "compositor_bias": net.compositors.bias.grad.reshape(4, k),
        "f": f.grad,
    }
    for name, grad in grads.items():
        torch.testing.assert_close(grad, golden[f"dcml_probe_grad_{name}"], rtol=0, atol=1e-12)


def test_golden_logits_only_loss_reaches_compositors_only(golden) -> None:
    """J_reinf = sum_m mean_b -log p_m[b, argmax]; written inline from §3.1, not the criteria package."""
    net = _golden_net(golden)
    f = golden["dcml_f"].clone().requires_grad_(True)
    _, _, aux = net(f)
    log_p = aux["compositor_logits"].log_softmax(dim=-1)  # (M, B, K)
    j_reinf = -log_p.max(dim=-1).values.mean(dim=1).sum()
    torch.testing.assert_close(j_reinf, golden["dcml_J_reinf"], rtol=0, atol=1e-12)
    j_reinf.backward()
    assert f.grad is None and net.ensemble.weight.grad is None and net.ensemble.bias.grad is None
    k, d = 4, 8
    torch.testing.assert_close(
        net.compositors.weight.grad.reshape(4, k, k * d),
        golden["dcml_Jreinf_grad_compositor_weight"],
        rtol=0,
        atol=1e-12,
    )
    torch.testing.assert_close(
        net.compositors.bias.grad.reshape(4, k),
        golden["dcml_Jreinf_grad_compositor_bias"],
        rtol=0,
        atol=1e-12,
    )


def _brute_force_composites(net: DCMLNet, f: torch.Tensor) -> torch.Tensor:
    """c_m = sum_k softmax(C_m Z)[:, k] z_k with explicit per-layer loops: (M, B, D)."""
    k, d, m = net.ensemble_num, net.embed_dim, net.compos_num
    w, b = net.ensemble.weight, net.ensemble.bias
    zs = [f @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d] for i in range(k)]
    z = torch.cat(zs, dim=1)
    out = []
    for j in range(m):
        cw, cb = net.compositors.weight[j * k : (j + 1) * k], net.compositors.bias[j * k : (j + 1) * k]
        p = torch.softmax(z @ cw.T + cb, dim=1)
        out.append(sum(p[:, i : i + 1] * zs[i] for i in range(k)))
    return torch.stack(out)


def test_eight_compositors_four_heads() -> None:
    torch.manual_seed(0)
    net = DCMLNet(nn.Identity(), 12, embed_dim=5, ensemble_num=3, compos_num=8, features=DIVA).double()
    f = torch.randn(4, 12, dtype=torch.float64)
    heads, _, aux = net(f)
    c = _brute_force_composites(net, f)  # (8, B, 5)
    for j, name in enumerate(DIVA):
        expected = F.normalize(torch.cat([c[2 * j], c[2 * j + 1]], dim=1), dim=1)
        assert heads[name].shape == (4, 10)
        torch.testing.assert_close(heads[name], expected, rtol=0, atol=1e-13)
    assert aux["compositor_logits"].shape == (8, 4, 3) and aux["subembeddings"].shape == (4, 15)


def test_plain_dcml_single_head_concatenates_all_composites() -> None:
    torch.manual_seed(1)
    net = DCMLNet(nn.Identity(), 12, embed_dim=5, ensemble_num=4, compos_num=4, features=("discriminative",))
    f = torch.randn(3, 12)
    heads, _, _ = net.double()(f.double())
    c = _brute_force_composites(net, f.double())
    assert list(heads) == ["discriminative"] and heads["discriminative"].shape == (3, 20)
    expected = F.normalize(torch.cat(list(c), dim=1), dim=1)
    torch.testing.assert_close(heads["discriminative"], expected, rtol=0, atol=1e-13)


def test_unnormalised_heads() -> None:
    torch.manual_seed(2)
    net = DCMLNet(nn.Identity(), 6, embed_dim=3, ensemble_num=2, compos_num=4, features=DIVA, normalize=False)
    f = torch.randn(2, 6, dtype=torch.float64)
    heads, _, _ = net.double()(f)
    c = _brute_force_composites(net, f)
    torch.testing.assert_close(heads["shared"], c[2], rtol=0, atol=1e-13)


def test_eval_on_subembeddings() -> None:
    torch.manual_seed(3)
    net = DCMLNet(nn.Identity(), 6, embed_dim=3, ensemble_num=2, compos_num=4, eval_on="subembeddings")
    f = torch.randn(5, 6)
    out = net.embed_for_eval(f)
    assert list(out) == ["subembeddings"]
    torch.testing.assert_close(out["subembeddings"], F.normalize(net.ensemble(f), dim=1))
    net.eval_on = "composites"
    assert list(net.embed_for_eval(f)) == list(DIVA)


def test_gradient_paths_from_heads() -> None:
    torch.manual_seed(4)
    trunk = nn.Linear(5, 6)
    net = DCMLNet(trunk, 6, embed_dim=3, ensemble_num=2, compos_num=4, features=DIVA)
    heads, _, aux = net(torch.randn(4, 5))
    heads["discriminative"].sum().backward()
    assert net.ensemble.weight.grad.abs().sum() > 0 and trunk.weight.grad.abs().sum() > 0
    grad = net.compositors.weight.grad.reshape(4, 2, 6)
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0  # only compositor 1 feeds the first head
    assert aux["subembeddings"].requires_grad and aux["compositor_logits"].requires_grad


@pytest.mark.parametrize("compos_num, features", [(6, DIVA), (3, ("a", "b"))])
def test_compos_num_must_be_multiple_of_heads(compos_num, features) -> None:
    with pytest.raises(ValueError) as err:
        DCMLNet(nn.Identity(), 8, embed_dim=4, compos_num=compos_num, features=features)
    assert f"compos_num={compos_num}" in str(err.value) and f"len(features)={len(features)}" in str(err.value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ensemble_num=0"):
        DCMLNet(nn.Identity(), 8, embed_dim=4, ensemble_num=0)
    with pytest.raises(ValueError, match="eval_on"):
        DCMLNet(nn.Identity(), 8, embed_dim=4, eval_on="both")
