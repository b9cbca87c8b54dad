"""Transforms against hand-written pipelines (PIL + numpy) under the same torch seed (algorithms.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision import transforms as T

from dcml_core.data import build_transforms

IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def _photo(w: int = 300, h: int = 260, mode: str = "RGB") -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1).astype(np.uint8)  # (H, W, 3)
    return Image.fromarray(rgb).convert(mode)


def _normalise(img: Image.Image, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float64) / 255.0  # (H, W, 3)
    return torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1)).float()  # (3, H, W)


def _hand_eval(img: Image.Image, resize: int, crop: int) -> Image.Image:
    w, h = img.size
    size = (
        (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    )  # shorter side -> resize
    img = img.resize(size, Image.BILINEAR)
    left, top = int(round((img.width - crop) / 2.0)), int(round((img.height - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def _hand_train_crop(img: Image.Image, crop: int) -> Image.Image:
    top, left, h, w = T.RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    return F.resized_crop(img, top, left, h, w, [crop, crop], T.InterpolationMode.BILINEAR)


def _flip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1) < 0.5 else img


def test_eval_pipeline_matches_hand_written() -> None:
    img = _photo()
    out = build_transforms("eval")(img)
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out, _normalise(_hand_eval(img, 256, 224), *IMAGENET), atol=1e-5, rtol=0)


def test_train_base_pipeline_matches_hand_written_under_same_seed() -> None:
    img, tf = _photo(), build_transforms("train")
    for seed in range(5):
        torch.manual_seed(seed)
        out = tf(img)
        torch.manual_seed(seed)
        expected = _normalise(_flip(_hand_train_crop(img, 224)), *IMAGENET)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_train_realistic_pipeline_matches_hand_written_under_same_seed() -> None:
    img, tf = _photo(), build_transforms("train", crop_size=96, augmentation="realistic")
    for seed in range(8):
        torch.manual_seed(seed)
        out = tf(img)
        torch.manual_seed(seed)
        x = _hand_train_crop(img, 96)
        if torch.rand(1) < 0.2:
            x = F.rgb_to_grayscale(x, num_output_channels=3)
        order, b, c, s, h = T.ColorJitter.get_params([0.6, 1.4], [0.6, 1.4], [0.6, 1.4], [-0.4, 0.4])
        adjust = {0: (F.adjust_brightness, b), 1: (F.adjust_contrast, c), 2: (F.adjust_saturation, s),
                  3: (F.adjust_hue, h)}  # fmt: skip
        for i in order.tolist():
            fn, factor = adjust[i]
            x = fn(x, factor)
        torch.testing.assert_close(out, _normalise(_flip(x), *IMAGENET), atol=1e-5, rtol=0)


def test_bninception_input_is_bgr_on_a_0_255_scale_with_crop_227() -> None:
    img = _photo()
    out = build_transforms("eval", arch_input="bninception")(img)
    assert out.shape == (3, 227, 227)
    rgb = np.asarray(_hand_eval(img, 256, 227), dtype=np.float64) / 255.0  # (H, W, 3)
    mean_rgb = np.array([0.502, 0.4588, 0.4078])
    expected = ((rgb - mean_rgb) / 0.0039)[..., ::-1].transpose(2, 0, 1)  # BGR
    torch.testing.assert_close(out, torch.from_numpy(expected.copy()).float(), atol=1e-3, rtol=1e-5)
    assert 200 < float(out.max() - out.min()) < 260  # 0-255 scale
    torch.manual_seed(0)
    train = build_transforms("train", arch_input="bninception")(img)
    assert train.shape == (3, 227, 227)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_any_image_mode_becomes_three_channels(mode: str) -> None:
    img = _photo(40, 30, "RGB").convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 300)
    out = build_transforms("eval", crop_size=16, resize_size=20)(img)
    assert out.shape == (3, 16, 16)
    if mode == "L":
        grey = _normalise(_hand_eval(img.convert("RGB"), 20, 16), *IMAGENET)
        torch.testing.assert_close(out, grey, atol=1e-5, rtol=0)


def test_small_sizes_and_bad_arguments() -> None:
    assert build_transforms("train", crop_size=32)(_photo(50, 40)).shape == (3, 32, 32)
    assert build_transforms("eval", crop_size=64, resize_size=72)(_photo(100, 80)).shape == (3, 64, 64)
    with pytest.raises(ValueError, match="kind must be 'train' or 'eval'"):
        build_transforms("test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arch_input must be one of"):
        build_transforms("eval", arch_input="bgr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="augmentation must be 'base' or 'realistic'"):
        build_transforms("train", augmentation="adv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"resize_size \(200\) must be >= crop_size \(224\)"):
        build_transforms("eval", resize_size=200)
