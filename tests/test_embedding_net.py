"""EmbeddingNet (DiVA multi-head / Revisiting single head) and the model factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcml_core.models import DCMLNet, EmbeddingNet, build_backbone, build_model, input_convention

DIVA = ("discriminative", "selfsimilarity", "shared", "intra")


def _linear_trunk(in_dim: int = 6, feature_dim: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(in_dim, feature_dim), nn.Tanh())


def test_heads_match_brute_force() -> None:
    trunk = _linear_trunk()
    net = EmbeddingNet(trunk, 10, DIVA, embed_dim=4).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    heads, f, aux = net(x)
    assert aux == {} and list(heads) == list(DIVA)
    assert torch.equal(f, trunk(x))
    for name in DIVA:
        linear = net.heads[name]
        raw = f @ linear.weight.T + linear.bias  # (B, D)
        expected = raw / raw.norm(dim=1, keepdim=True)
        assert heads[name].shape == (5, 4)
        torch.testing.assert_close(heads[name], expected, rtol=0, atol=1e-14)
    assert not torch.allclose(heads["discriminative"], heads["shared"])  # independent heads


def test_unnormalised_heads_and_revisiting_single_head() -> None:
    net = EmbeddingNet(_linear_trunk(), 10, ("discriminative",), embed_dim=3, normalize=False)
    x = torch.randn(4, 6)
    heads, f, _ = net(x)
    assert list(heads) == ["discriminative"]
    torch.testing.assert_close(heads["discriminative"], net.heads["discriminative"](f))
    assert not torch.allclose(heads["discriminative"].norm(dim=1), torch.ones(4))
    assert net.embed_for_eval(x).keys() == {"discriminative"}


def test_gradients_reach_heads_and_trunk() -> None:
    net = EmbeddingNet(_linear_trunk(), 10, DIVA, embed_dim=4)
    heads, _, _ = net(torch.randn(3, 6))
    heads["shared"].sum().backward()
    assert net.heads["shared"].weight.grad is not None
    assert net.heads["intra"].weight.grad is None
    assert net.trunk[0].weight.grad is not None


@pytest.mark.parametrize("features", [(), ("a", "a"), "discriminative", ("a", "")])
def test_bad_features(features) -> None:
    with pytest.raises(ValueError, match="features"):
        EmbeddingNet(nn.Identity(), 4, features, embed_dim=2)


def test_bad_embed_dim() -> None:
    with pytest.raises(ValueError, match="embed_dim=0"):
        EmbeddingNet(nn.Identity(), 4, ("discriminative",), embed_dim=0)


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    trunk, dim = build_backbone("resnet18", None, frozen_bn=True)
    net = EmbeddingNet(trunk, dim, DIVA, embed_dim=8).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, _, _ = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out, f, _ = net_cl(x.contiguous(memory_format=torch.channels_last))
    for name in DIVA:
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-5)
    assert f.shape == (2, dim)


# ---------------------------------------------------------------------------------------------- factory


def test_build_model_margin_and_diva() -> None:
    margin = build_model(
        method="margin",
        arch="resnet18_frozen_normalize",
        embed_dim=16,
        features=("discriminative",),
        pretrained=None,
    )
    assert isinstance(margin, EmbeddingNet) and list(margin.heads) == ["discriminative"]
    diva = build_model(method="diva", arch="resnet18_frozen", embed_dim=16, features=DIVA, pretrained="none")
    assert isinstance(diva, EmbeddingNet) and list(diva.heads) == list(DIVA) and not diva.normalize
    assert not any(m.training for m in diva.modules() if isinstance(m, nn.BatchNorm2d))
    heads, f, aux = diva.train()(torch.randn(2, 3, 64, 64))
    assert f.shape == (2, 512) and aux == {} and heads["intra"].shape == (2, 16)
    assert not torch.allclose(heads["intra"].norm(dim=1), torch.ones(2))  # arch without `_normalize`


def test_build_model_dcml_uniform_triple() -> None:
    net = build_model(
        method="dcml",
        arch="resnet18_frozen_normalize",
        embed_dim=8,
        features=DIVA,
        pretrained=None,
        ensemble_num=3,
        compos_num=8,
    )
    assert isinstance(net, DCMLNet)
    heads, f, aux = net(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in heads.items()} == {name: (2, 16) for name in DIVA}
    assert aux["compositor_logits"].shape == (8, 2, 3) and aux["subembeddings"].shape == (2, 24)


def test_build_model_rejects_bad_settings_before_building(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("backbone built before validation")

    monkeypatch.setattr("dcml_core.models.factory.build_backbone", fail)
    common = dict(arch="resnet50_frozen_normalize", embed_dim=8, pretrained=None)
    with pytest.raises(ValueError, match="unknown method 'triplet'"):
        build_model(method="triplet", features=DIVA, **common)
    with pytest.raises(ValueError, match="single head"):
        build_model(method="margin", features=DIVA, **common)
    with pytest.raises(ValueError, match="compos_num=6"):
        build_model(method="dcml", features=DIVA, compos_num=6, **common)
    with pytest.raises(ValueError, match="Did you mean 'resnet50_frozen_normalize'"):
        build_model(method="dcml", features=DIVA, **{**common, "arch": "resent50_frozen_normalize"})


def test_build_model_missing_weights_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--pretrained_weights"):
        build_model(
            method="diva",
            arch="resnet50_frozen_normalize",
            embed_dim=8,
            features=DIVA,
            pretrained=str(tmp_path / "missing.pth"),
        )


def test_input_convention() -> None:
    assert input_convention("resnet50_frozen_normalize") == "rgb"
    assert input_convention("resnet18_frozen_normalize") == "rgb"
    assert input_convention("bninception_normalize") == "bninception"
    with pytest.raises(ValueError):
        input_convention("bninception_v2")


def test_head_linear_layer_shapes() -> None:
    net = EmbeddingNet(nn.Identity(), 2048, DIVA, embed_dim=128)
    assert all(tuple(h.weight.shape) == (128, 2048) for h in net.heads.values())
    out, _, _ = net(torch.randn(3, 2048))
    torch.testing.assert_close(out["shared"].norm(dim=1), torch.ones(3))
