"""Batched RandomResizedCrop: box distribution vs torchvision (KS tests), resampling, flip, normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import ks_2samp
from torchvision import transforms as T

from dcml_core.data.batch_augment import (
    BatchRandomResizedCrop,
    BufferPool,
    Normalize,
    pad_crops,
    rescale_boxes,
    resize_weights,
    resized_crop_loop,
    resized_crop_matmul,
    sample_crop_boxes,
)
from dcml_core.data.transforms import build_transforms

N_BOXES = 20_000
SIZES = [(375, 500), (500, 333), (64, 64), (40, 400)]  # (H, W); 40x400 often needs the fallback


def _torchvision_boxes(h: int, w: int, n: int, scale: tuple[float, float]) -> np.ndarray:
    torch.manual_seed(123)
    img = torch.empty(3, h, w)
    return np.array([T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3]) for _ in range(n)])


def _ours(h: int, w: int, n: int, scale: tuple[float, float]) -> np.ndarray:
    torch.manual_seed(456)
    return sample_crop_boxes(torch.full((n,), h), torch.full((n,), w), scale).numpy()


def _features(boxes: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
    top, left, bh, bw = boxes.T.astype(np.float64)
    return {
        "area": bh * bw / (h * w),
        "log_ratio": np.log(bw / bh),
        "top": (top + 0.5) / (h - bh + 1),  # relative position inside the free range
        "left": (left + 0.5) / (w - bw + 1),
    }


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.5, 1.0)])
def test_box_distribution_matches_torchvision(scale: tuple[float, float]) -> None:
    for h, w in SIZES:
        ref, ours = (
            _features(_torchvision_boxes(h, w, N_BOXES, scale), h, w),
            _features(_ours(h, w, N_BOXES, scale), h, w),
        )
        for name in ref:
            result = ks_2samp(ref[name], ours[name])
            assert result.pvalue > 1e-3, (h, w, scale, name, result)
        assert abs(ref["area"].mean() - ours["area"].mean()) < 0.01


def test_ks_test_detects_a_wrong_sampler() -> None:
    """Negative control: uniform instead of log-uniform aspect ratios is rejected by the same test."""
    h, w, n = 375, 500, N_BOXES
    ref = _features(_torchvision_boxes(h, w, n, (0.08, 1.0)), h, w)
    g = torch.Generator().manual_seed(0)
    area = h * w * torch.empty(n, dtype=torch.float64).uniform_(0.08, 1.0, generator=g)
    aspect = torch.empty(n, dtype=torch.float64).uniform_(3 / 4, 4 / 3, generator=g)  # wrong: not log-uniform
    bw, bh = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    keep = (bw <= w) & (bh <= h)
    wrong = np.log((bw[keep] / bh[keep]).numpy())
    assert ks_2samp(ref["log_ratio"], wrong).pvalue < 1e-6


def test_boxes_inside_image_and_fallback_is_torchvision_central_crop() -> None:
    torch.manual_seed(0)
    hs, ws = torch.randint(1, 600, (5000,)), torch.randint(1, 600, (5000,))
    boxes = sample_crop_boxes(hs, ws)
    top, left, bh, bw = boxes.T
    assert (bh >= 1).all() and (bw >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= hs).all() and (left + bw <= ws).all()
    # No attempt can fit in 1000 x 1 or 1 x 1000: both take the deterministic fallback.
    for h, w in [(1000, 1), (1, 1000), (3, 90)]:
        expected = T.RandomResizedCrop.get_params(torch.empty(3, h, w), [0.08, 1.0], [3 / 4, 4 / 3])
        assert sample_crop_boxes(torch.tensor([h]), torch.tensor([w]))[0].tolist() == list(expected)


def test_rescale_boxes_to_reduced_images() -> None:
    boxes = torch.tensor([[0, 0, 1000, 500], [100, 50, 200, 300]])
    original = torch.tensor([[1000, 500], [1000, 500]])
    assert torch.equal(rescale_boxes(boxes, original, original), boxes)
    out = rescale_boxes(boxes, original, torch.tensor([[500, 250], [500, 250]]))
    assert out.tolist() == [[0, 0, 500, 250], [50, 25, 100, 150]]


def _image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (natural-image-like spectrum), (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8))
    noise = rng.integers(-15, 16, (h, w, 3))
    return np.clip(np.asarray(small.resize((w, h), Image.BICUBIC)).astype(int) + noise, 0, 255).astype(
        np.uint8
    )


BOXES = [(10, 20, 60, 80), (0, 0, 90, 120), (30, 5, 12, 17), (5, 100, 80, 20)]  # down, down, up, mixed


@pytest.mark.parametrize("size", [32, 48])
def test_resamplers_match_torchvision_resized_crop_without_antialias(size: int) -> None:
    img = _image()
    boxes, flips = torch.tensor(BOXES), torch.zeros(len(BOXES), dtype=torch.bool)
    tensor_img = torch.from_numpy(img).permute(2, 0, 1)
    ref = torch.stack([TF.resized_crop(tensor_img.float(), *b, [size, size], antialias=False) for b in BOXES])
    ref = ref.round().clamp(0, 255)
    loop = resized_crop_loop([img] * len(BOXES), boxes, size, flips, antialias=False).float()
    matmul = resized_crop_matmul(
        pad_crops([img] * len(BOXES), boxes), boxes[:, 2:], size, flips, antialias=False
    )
    assert (loop - ref).abs().max() <= 1
    assert (matmul - ref).abs().max() <= 1
    assert (matmul - ref).abs().float().mean() < 0.02


def test_antialiased_resamplers_match_pil_resize() -> None:
    """The reference resizes PIL images (antialiased bilinear): both resamplers agree with it to +-1."""
    img, size = _image(), 40
    pil = Image.fromarray(img)
    crops = [
        np.array(pil.crop((x, t, x + w, t + h)).resize((size, size), Image.BILINEAR)) for t, x, h, w in BOXES
    ]
    ref = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    boxes, flips = torch.tensor(BOXES), torch.zeros(len(BOXES), dtype=torch.bool)
    loop = resized_crop_loop([img] * len(BOXES), boxes, size, flips, antialias=True).float()
    matmul = resized_crop_matmul(
        pad_crops([img] * len(BOXES), boxes), boxes[:, 2:], size, flips, antialias=True
    )
    assert (loop - ref).abs().max() <= 1 and (matmul - ref).abs().max() <= 1
    aliased = resized_crop_loop([img], boxes[:1], size, flips[:1], antialias=False).float()
    assert (aliased - ref[:1]).abs().max() > 1  # antialiasing matters on a 2x downscale


def test_resize_weights_are_row_stochastic_and_local() -> None:
    w = resize_weights(torch.tensor([10, 50]), 64, 20, antialias=True)  # (2, 20, 64)
    assert torch.allclose(w.sum(-1), torch.ones(2, 20))
    assert (w[0, :, 10:] == 0).all() and (w[1, :, 50:] == 0).all()  # nothing outside the crop


def test_threaded_cpu_resampling_gives_the_same_batch() -> None:
    images, boxes = [_image(seed=s) for s in range(5)], torch.tensor(BOXES + BOXES[:1])
    flips, norm = torch.tensor([True, False, True, False, True]), Normalize()
    one = resized_crop_loop(images, boxes[:5], 24, flips, normalize=norm, num_threads=1)
    assert torch.equal(resized_crop_loop(images, boxes[:5], 24, flips, normalize=norm, num_threads=3), one)


def test_flip_mirrors_the_output_exactly() -> None:
    img, boxes = _image(), torch.tensor(BOXES)
    for resample in ("loop", "matmul"):
        plain, flipped = (
            resized_crop_loop([img] * 4, boxes, 24, torch.full((4,), f))
            if resample == "loop"
            else resized_crop_matmul(pad_crops([img] * 4, boxes), boxes[:, 2:], 24, torch.full((4,), f))
            for f in (False, True)
        )
        assert torch.equal(flipped, plain.flip(-1)), resample


@pytest.mark.parametrize("arch_input", ["rgb", "bninception"])
def test_normalize_matches_reference_to_tensor_normalize(arch_input: str) -> None:
    img = _image(32, 32)
    ref_tf = build_transforms("eval", crop_size=32, resize_size=32, arch_input=arch_input)
    ref = ref_tf(Image.fromarray(img))  # Resize(32) and CenterCrop(32) are identities here
    ours = Normalize(arch_input)(torch.from_numpy(img).permute(2, 0, 1)[None])[0]
    assert torch.allclose(ours, ref, atol=2e-4 if arch_input == "bninception" else 1e-5)


def test_batch_transform_uses_the_global_torch_rng_and_samples_flips() -> None:
    aug = BatchRandomResizedCrop(16, scale=(0.08, 1.0))
    hw = torch.tensor([[90, 120]] * 4000)
    torch.manual_seed(7)
    a = aug.sample(hw, hw)
    state = torch.get_rng_state()
    torch.manual_seed(7)
    b = aug.sample(hw, hw)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.flips, b.flips)
    assert torch.equal(torch.get_rng_state(), state)  # same draws, same generator state afterwards
    assert abs(a.flips.float().mean().item() - 0.5) < 0.03
    out = aug.apply([_image()] * 8, type(a)(a.boxes[:8], a.flips[:8]), torch.device("cpu"))
    assert out.shape == (8, 3, 16, 16) and out.dtype == torch.float32


def test_loop_and_matmul_give_the_same_batch() -> None:
    images = [_image(90, 120, seed=s) for s in range(3)] + [_image(64, 40, seed=9)]
    hw = torch.tensor([im.shape[:2] for im in images])
    torch.manual_seed(1)
    params = BatchRandomResizedCrop(20).sample(hw, hw)
    outs = [BatchRandomResizedCrop(20, resampler=r).apply(images, params, "cpu") for r in ("loop", "matmul")]
    assert (outs[0] - outs[1]).abs().max() <= 1.0 / (255 * 0.224) + 1e-4  # one grey level


def test_buffer_pool_reuses_memory_only_when_no_tensor_uses_it() -> None:
    pool, shape = BufferPool(max_buffers=2), (8, 3, 224, 224)
    first = pool.empty(shape)
    address = first.data_ptr()
    view = first[:2]
    del first
    assert pool.empty(shape).data_ptr() != address  # a view keeps the buffer
    del view
    again = pool.empty(shape)
    assert again.data_ptr() == address and again.shape == shape  # recycled once nothing uses it
    as_numpy = again.numpy()
    del again
    third = pool.empty(shape)  # the first buffer is still used (numpy), the second is free again
    assert third.data_ptr() != address and pool.empty(shape).data_ptr() != address
    del as_numpy
    assert pool.empty((2, 3, 8, 8)).numel() == 384  # small requests: plain torch.empty


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="scale"):
        BatchRandomResizedCrop(16, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="flip_p"):
        BatchRandomResizedCrop(16, flip_p=1.5)
    with pytest.raises(ValueError, match="resampler"):
        BatchRandomResizedCrop(16, resampler="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arch_input"):
        Normalize("bgr")  # type: ignore[arg-type]
    assert math.isclose(BatchRandomResizedCrop(8).ratio[1], 4 / 3)
