"""Image transforms of the reference code (algorithms.md §4; DiVA ``basic_dataset_scaffold.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image

if TYPE_CHECKING:
    from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BN-Inception: mean in RGB order, std 0.0039 ~ 1/255 gives a 0-255 scale; the channels end up BGR.
BNINCEPTION_MEAN = (0.502, 0.4588, 0.4078)
BNINCEPTION_STD = (0.0039, 0.0039, 0.0039)
DEFAULT_CROP = {"rgb": 224, "bninception": 227}


class ToRGB:
    """Convert any PIL image (L, P, RGBA, CMYK, ...) to RGB, as the reference always does."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


class RGBToBGR:
    """Reverse the channel order of a (3, H, W) tensor (BN-Inception expects BGR)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x[[2, 1, 0]]  # (3, H, W)

    def __repr__(self) -> str:
        return "RGBToBGR()"


def build_transforms(
    kind: Literal["train", "eval"],
    *,
    crop_size: int | None = None,
    resize_size: int = 256,
    arch_input: Literal["rgb", "bninception"] = "rgb",
    augmentation: Literal["base", "realistic"] = "base",
    crop_scale: tuple[float, float] = (0.08, 1.0),
) -> T.Compose:
    """Train or eval pipeline: PIL image -> normalised (3, crop, crop) float tensor.

    train ``base``: RandomResizedCrop -> RandomHorizontalFlip(0.5) -> ToTensor -> Normalize;
    train ``realistic``: RandomResizedCrop -> RandomGrayscale(0.2) -> ColorJitter(0.4, 0.4, 0.4, 0.4)
    -> RandomHorizontalFlip(0.5) -> ToTensor -> Normalize;
    eval: Resize(resize_size) -> CenterCrop -> ToTensor -> Normalize. ``crop_size=None`` gives 224 (227 for
    BN-Inception, as in DiVA). BN-Inception inputs are normalised on a 0-255 scale and then turned to BGR.
    ``crop_scale`` is the RandomResizedCrop area range; the reference uses torchvision's (0.08, 1.0). A larger
    lower bound (e.g. 0.5) suits small images whose object may be cut away by small crops (the demo glyphs).
    """
    if kind not in ("train", "eval"):
        raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
    if arch_input not in DEFAULT_CROP:
        raise ValueError(f"arch_input must be one of {sorted(DEFAULT_CROP)}, got {arch_input!r}")
    if augmentation not in ("base", "realistic"):
        raise ValueError(f"augmentation must be 'base' or 'realistic', got {augmentation!r}")
    crop = DEFAULT_CROP[arch_input] if crop_size is None else crop_size
    if crop < 1 or resize_size < 1:
        raise ValueError(f"crop_size and resize_size must be positive, got {crop} and {resize_size}")
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
    if kind == "eval" and resize_size < crop:
        raise ValueError(
            f"resize_size ({resize_size}) must be >= crop_size ({crop}) for the eval center crop"
        )

    # imported here: a sweep's driver checks data without importing torchvision
    from torchvision import transforms as T

    steps: list = [ToRGB()]
    if kind == "eval":
        steps += [T.Resize(resize_size), T.CenterCrop(crop)]
    elif augmentation == "base":
        steps += [T.RandomResizedCrop(crop, scale=crop_scale), T.RandomHorizontalFlip(0.5)]
    else:
        steps += [
            T.RandomResizedCrop(crop, scale=crop_scale),
            T.RandomGrayscale(p=0.2),
            T.ColorJitter(0.4, 0.4, 0.4, 0.4),
            T.RandomHorizontalFlip(0.5),
        ]
    steps.append(T.ToTensor())
    if arch_input == "rgb":
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    else:
        steps += [T.Normalize(BNINCEPTION_MEAN, BNINCEPTION_STD), RGBToBGR()]
    return T.Compose(steps)
