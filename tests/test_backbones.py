"""Backbones: arch names, frozen BN, BN-Inception layout, weight loading (never from the network)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from dcml_core.models import ArchSpec, BNInception, EmbeddingNet, build_backbone, parse_arch


def _bn_modules(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


# ---------------------------------------------------------------------------------------------- arch names


@pytest.mark.parametrize(
    "arch, spec",
    [
        ("resnet50_frozen_normalize", ArchSpec("resnet50", True, True)),
        ("resnet18_frozen_normalize", ArchSpec("resnet18", True, True)),
        ("resnet50_normalize", ArchSpec("resnet50", False, True)),
        ("resnet50_frozen", ArchSpec("resnet50", True, False)),
        ("bninception_normalize", ArchSpec("bninception", False, True)),
        ("bninception_frozen_normalize", ArchSpec("bninception", True, True)),
    ],
)
def test_parse_arch_reference_names(arch: str, spec: ArchSpec) -> None:
    assert parse_arch(arch) == spec


def test_parse_arch_readme_typo_gets_suggestion() -> None:
    with pytest.raises(ValueError) as err:
        parse_arch("resent50_frozen_normalize")
    message = str(err.value)
    assert "did you mean 'resnet50_frozen_normalize'" in message.lower()
    assert "bninception_frozen_normalize" in message  # lists the valid names


def test_parse_arch_is_exact_not_substring() -> None:
    with pytest.raises(ValueError) as err:
        parse_arch("my_resnet50_frozen_normalize_v2")
    assert "Valid names" in str(err.value)
    with pytest.raises(ValueError) as err:
        parse_arch("vgg16")
    assert "did you mean" not in str(err.value).lower()


def test_unknown_backbone_name() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("resnet5O", None, frozen_bn=True)


# ---------------------------------------------------------------------------------------------- frozen BN


def test_frozen_bn_resnet18_stats_fixed_affine_trained() -> None:
    torch.manual_seed(0)
    trunk, dim = build_backbone("resnet18", None, frozen_bn=True)
    assert dim == 512
    trunk.train()
    bns = _bn_modules(trunk)
    assert len(bns) == 20 and not any(bn.training for bn in bns)
    assert trunk.training and trunk.body.conv1.training  # only the BN modules are switched
    stats = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in bns]
    x = torch.randn(2, 3, 64, 64)
    f = trunk(x)
    assert f.shape == (2, 512)
    for bn, (mean, var, count) in zip(bns, stats):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.num_batches_tracked, count)
    f.square().sum().backward()
    for bn in bns:
        assert bn.weight.requires_grad and bn.bias.requires_grad
        assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0
    with torch.no_grad():  # running statistics in train mode too, so train and eval outputs agree
        assert torch.allclose(trunk(x), trunk.eval()(x), atol=1e-6)


def test_frozen_bn_survives_train_on_parent_module() -> None:
    trunk, dim = build_backbone("resnet18", None, frozen_bn=True)
    net = EmbeddingNet(trunk, dim, ("discriminative",), 8)
    net.eval()
    net.train()
    assert net.training and net.heads.training
    assert not any(bn.training for bn in _bn_modules(net))


def test_unfrozen_bn_updates_running_stats() -> None:
    trunk, _ = build_backbone("resnet18", None, frozen_bn=False)
    trunk.train()
    bn = trunk.body.bn1
    assert bn.training
    before = bn.running_mean.clone()
    trunk(torch.randn(2, 3, 64, 64))
    assert not torch.equal(bn.running_mean, before)


def test_resnet50_trunk_small_input() -> None:
    trunk, dim = build_backbone("resnet50", "none", frozen_bn=True)
    assert dim == 2048
    assert len(_bn_modules(trunk)) == 53
    with torch.no_grad():
        assert trunk.train()(torch.randn(2, 3, 64, 64)).shape == (2, 2048)


# ---------------------------------------------------------------------------------------------- BN-Inception

# unit names per inception block, in the pretrainedmodels layout
_FULL = ("1x1", "3x3_reduce", "3x3", "double_3x3_reduce", "double_3x3_1", "double_3x3_2", "pool_proj")
_REDUCTION = ("3x3_reduce", "3x3", "double_3x3_reduce", "double_3x3_1", "double_3x3_2")
_BLOCKS = {b: (_REDUCTION if b in ("3c", "4e") else _FULL) for b in "3a 3b 3c 4a 4b 4c 4d 4e 5a 5b".split()}
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _expected_bninception_keys() -> list[str]:
    units = ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    units += [f"inception_{b}_{u}" for b, names in _BLOCKS.items() for u in names]
    keys = []
    for unit in units:
        keys += [f"{unit}.weight", f"{unit}.bias"] + [f"{unit}_bn.{s}" for s in _BN_SUFFIXES]
    return keys + ["last_linear.weight", "last_linear.bias"]


def test_bninception_state_dict_layout() -> None:
    state = BNInception(num_classes=1000).state_dict()
    assert list(state) == _expected_bninception_keys()  # same names and order as pretrainedmodels
    shapes = {
        "conv1_7x7_s2.weight": (64, 3, 7, 7),
        "conv1_7x7_s2_bn.running_var": (64,),
        "conv2_3x3_reduce.weight": (64, 64, 1, 1),
        "conv2_3x3.weight": (192, 64, 3, 3),
        "inception_3a_1x1.weight": (64, 192, 1, 1),
        "inception_3a_pool_proj.weight": (32, 192, 1, 1),
        "inception_3b_3x3.weight": (96, 64, 3, 3),
        "inception_3c_3x3.weight": (160, 128, 3, 3),
        "inception_3c_double_3x3_2.weight": (96, 96, 3, 3),
        "inception_4a_1x1.weight": (224, 576, 1, 1),
        "inception_4d_double_3x3_reduce.weight": (160, 608, 1, 1),
        "inception_4e_double_3x3_2_bn.weight": (256,),
        "inception_5a_1x1.weight": (352, 1056, 1, 1),
        "inception_5b_double_3x3_1.weight": (224, 192, 3, 3),
        "inception_5b_pool_proj.weight": (128, 1024, 1, 1),
        "last_linear.weight": (1000, 1024),
        "last_linear.bias": (1000,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    n_params = sum(p.numel() for p in BNInception(num_classes=1000).parameters())
    assert n_params == 11_295_240  # 10,270,240 in the trunk + 1,025,000 in the ImageNet classifier


def test_bninception_forward_227_and_224() -> None:
    trunk, dim = build_backbone("bninception", None, frozen_bn=False)
    assert dim == 1024
    trunk.eval()
    with torch.no_grad():
        assert trunk(torch.randn(2, 3, 227, 227)).shape == (2, 1024)
        assert trunk.body.features(torch.randn(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


def test_bninception_loads_pretrainedmodels_file(tmp_path) -> None:
    torch.manual_seed(1)
    source = BNInception(num_classes=1000)
    for name, buf in source.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_()
    # the published file predates `num_batches_tracked`
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bn_inception.pth"
    torch.save(state, path)
    trunk, _ = build_backbone("bninception", str(path), frozen_bn=True)
    loaded = trunk.body.state_dict()
    assert "last_linear.weight" not in loaded
    for key, value in state.items():
        if not key.startswith("last_linear"):
            assert torch.equal(loaded[key], value), key


# ---------------------------------------------------------------------------------------------- weight files


def test_load_resnet18_state_dict_by_path(tmp_path) -> None:
    torch.manual_seed(2)
    state = resnet18().state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    trunk, _ = build_backbone("resnet18", str(path), frozen_bn=True)
    loaded = trunk.body.state_dict()
    assert "fc.weight" not in loaded
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))


def test_load_pretrainedmodels_resnet50_layout(tmp_path) -> None:
    torch.manual_seed(3)
    state = {k.replace("fc.", "last_linear.", 1): v for k, v in resnet50().state_dict().items()}
    assert "last_linear.weight" in state
    path = tmp_path / "ptm_resnet50.pth"
    torch.save(state, path)
    trunk, _ = build_backbone("resnet50", str(path), frozen_bn=True)
    assert torch.equal(trunk.body.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert torch.equal(trunk.body.bn1.running_var, state["bn1.running_var"])


def test_module_prefix_is_stripped(tmp_path) -> None:
    state = {f"module.{k}": v for k, v in resnet18().state_dict().items()}
    torch.save(state, tmp_path / "dp.pth")
    trunk, _ = build_backbone("resnet18", str(tmp_path / "dp.pth"), frozen_bn=True)
    assert torch.equal(trunk.body.conv1.weight, state["module.conv1.weight"])


def test_missing_trunk_key_raises(tmp_path) -> None:
    state = resnet18().state_dict()
    del state["layer4.1.bn2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"1 missing keys \['layer4.1.bn2.weight'\]"):
        build_backbone("resnet18", str(tmp_path / "broken.pth"), frozen_bn=True)


def test_wrong_architecture_file_raises(tmp_path) -> None:
    torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not match the resnet50 trunk"):
        build_backbone("resnet50", str(tmp_path / "r18.pth"), frozen_bn=True)


def test_file_that_is_not_a_state_dict(tmp_path) -> None:
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="state dict"):
        build_backbone("resnet18", str(tmp_path / "tensor.pth"), frozen_bn=True)


def test_missing_file_message(tmp_path) -> None:
    path = tmp_path / "nope" / "weights.pth"
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("resnet50", str(path), frozen_bn=True)
    assert str(path) in str(err.value) and "--pretrained_weights" in str(err.value)


@pytest.mark.parametrize(
    "name, file",
    [
        ("resnet50", "resnet50-0676ba61.pth"),
        ("resnet18", "resnet18-f37072fd.pth"),
        ("bninception", "bn_inception-52deb4733.pth"),
    ],
)
def test_imagenet_missing_from_hub_cache(tmp_path, monkeypatch, name: str, file: str) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        build_backbone(name, "imagenet", frozen_bn=True)
    message = str(err.value)
    assert file in message and str(tmp_path / "checkpoints") in message and "--pretrained_weights" in message


def test_imagenet_loaded_from_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = resnet18().state_dict()
    torch.save(state, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    trunk, _ = build_backbone("resnet18", "imagenet", frozen_bn=True)
    assert torch.equal(trunk.body.layer3[0].downsample[0].weight, state["layer3.0.downsample.0.weight"])


# ---------------------------------------------------------------- the demo CNN's max-pooling
def _reference_pool_grad(x: torch.Tensor, pool: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = pool(x)
    out.backward(torch.arange(1, out.numel() + 1, dtype=x.dtype).reshape(out.shape))
    return out.detach(), x.grad


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 4, 9, 7), (1, 2, 33, 32), (4, 16, 32, 32)])
def test_demo_pooling_without_autograd_gives_the_values_of_max_pool2d_bit_for_bit(shape) -> None:
    from dcml_core.models.demo_cnn import MaxPool2x2

    torch.manual_seed(0)
    x = torch.relu(torch.randn(*shape))
    x[0, 0, :2, :2] = float("nan")  # NaN wins its window, as in max_pool2d
    x[-1, -1, 2:4, 2:4] = 0.5  # a window of equal values
    with torch.inference_mode():
        fast, reference = MaxPool2x2()(x), nn.functional.max_pool2d(x, 2)
    assert fast.shape == reference.shape  # an odd last row or column is dropped
    assert torch.equal(fast.isnan(), reference.isnan()) and fast.isnan().sum() == 1
    assert torch.equal(fast.nan_to_num(7.0), reference.nan_to_num(7.0))


def test_demo_pooling_with_autograd_is_max_pool2d_and_training_is_unchanged() -> None:
    """Where a gradient is needed, the gradient of a window of equal values goes to one element (max_pool2d's),
    not split as torch.maximum would: the demo CNN trains exactly as with nn.MaxPool2d."""
    from dcml_core.models.demo_cnn import DemoCNN, MaxPool2x2

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = 1.0  # four equal maxima in the first window
    out, grad = _reference_pool_grad(x, MaxPool2x2())
    ref_out, ref_grad = _reference_pool_grad(x, nn.MaxPool2d(2))
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)
    assert grad[0, 0, :2, :2].count_nonzero() == 1
    torch.manual_seed(0)
    model = DemoCNN()
    reference = DemoCNN()
    reference.load_state_dict(model.state_dict())
    reference.features = nn.Sequential(*[nn.MaxPool2d(2) if isinstance(m, MaxPool2x2) else m for m in model.features])
    images = torch.rand(6, 3, 32, 32).round()  # flat regions: many equal activations, as in the demo's glyphs
    for net in (model, reference):
        net(images).square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad)
    with torch.inference_mode():
        assert torch.equal(model(images), reference(images))
