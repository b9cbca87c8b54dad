"""The reference training transform for a whole batch of uint8 images (algorithms.md §4), on any device.

``RandomResizedCrop(size, scale, ratio) -> RandomHorizontalFlip(p) -> ToTensor -> Normalize`` (and the BGR
0-255 variant of BN-Inception). Crop boxes follow torchvision's ``RandomResizedCrop.get_params`` exactly (10
attempts of area/log-ratio sampling, then the central-crop fallback), vectorised, on the global CPU torch
generator, so a checkpoint of ``torch.get_rng_state()`` makes the boxes reproducible. Two resamplers:

- ``"loop"`` (CPU): per image, the crop is a view of the cached pixels resized by ``F.interpolate`` on
  uint8 channels-last data, whose antialiased bilinear kernel matches PIL's ``resize`` (the reference) to
  +-1 grey level;
- ``"matmul"`` (GPU): the crops of a batch are padded into one tensor and resized by two batched matrix
  products with per-image separable bilinear weights (antialiased like PIL, or plain like
  ``F.interpolate(antialias=False)``); the flip is folded into the column weights.

``antialias=True`` (default) is faithful to the reference, which resizes PIL images (always antialiased);
``antialias=False`` gives what torchvision does on tensors with ``antialias=False`` (aliasing on downscales).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dcml_core.data.buffer_pool import BufferPool, empty_cpu
from dcml_core.data.transforms import BNINCEPTION_MEAN, BNINCEPTION_STD, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "BatchRandomResizedCrop",
    "BufferPool",
    "CropParams",
    "Normalize",
    "Resampler",
    "pad_crops",
    "rescale_boxes",
    "resize_weights",
    "resized_crop_loop",
    "resized_crop_matmul",
    "sample_crop_boxes",
]

Resampler = Literal["auto", "loop", "matmul"]


def sample_crop_boxes(
    heights: Tensor,
    widths: Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Tensor:
    """(B, 4) int64 ``top, left, height, width``: ``RandomResizedCrop.get_params`` for B images at once.

    All attempts are drawn at once (torchvision stops at the first valid one; attempts are i.i.d., so the
    distribution is the same). Draws come from the global torch CPU generator.
    """
    h, w = heights.double(), widths.double()  # (B,), (B,)
    n = h.shape[0]
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision
    area_frac = torch.empty(n, attempts).uniform_(scale[0], scale[1]).double()  # (B, A)
    aspect = torch.exp(torch.empty(n, attempts).uniform_(log_ratio[0], log_ratio[1])).double()  # (B, A)
    target = (h * w)[:, None] * area_frac  # (B, A)
    cw, ch = torch.round(torch.sqrt(target * aspect)), torch.round(torch.sqrt(target / aspect))  # (B, A)
    ok = (cw > 0) & (cw <= w[:, None]) & (ch > 0) & (ch <= h[:, None])  # (B, A)
    first = ok.to(torch.int8).argmax(1, keepdim=True)  # (B, 1) first valid attempt
    found = ok.any(1)  # (B,)
    # Central-crop fallback: the whole image, clipped to the allowed aspect-ratio range.
    in_ratio = w / h
    lo, hi = min(ratio), max(ratio)
    fb_w = torch.where(in_ratio > hi, torch.round(h * hi), w)
    fb_h = torch.where(in_ratio < lo, torch.round(w / lo), h)
    crop_h = torch.where(found, ch.gather(1, first)[:, 0], fb_h)  # (B,)
    crop_w = torch.where(found, cw.gather(1, first)[:, 0], fb_w)
    u = torch.rand(n, 2, dtype=torch.float64)  # (B, 2) uniform positions, randint(0, h - ch + 1) alike
    top = torch.where(
        found, torch.floor(u[:, 0] * (h - crop_h + 1)), torch.div(h - crop_h, 2, rounding_mode="floor")
    )
    left = torch.where(
        found, torch.floor(u[:, 1] * (w - crop_w + 1)), torch.div(w - crop_w, 2, rounding_mode="floor")
    )
    return torch.stack([top, left, crop_h, crop_w], 1).long()  # (B, 4)


def rescale_boxes(boxes: Tensor, original_hw: Tensor, stored_hw: Tensor) -> Tensor:
    """Boxes sampled on the original image sizes, moved to the stored (possibly reduced) sizes."""
    if torch.equal(original_hw, stored_hw):
        return boxes
    factor = stored_hw.double() / original_hw.double()  # (B, 2)
    start = torch.round(boxes[:, :2].double() * factor)  # (B, 2)
    end = torch.round((boxes[:, :2] + boxes[:, 2:]).double() * factor)  # (B, 2)
    start = torch.minimum(start, stored_hw.double() - 1)
    length = torch.maximum(end - start, torch.ones_like(start))
    length = torch.minimum(length, stored_hw.double() - start)
    return torch.cat([start, length], 1).long()  # (B, 4)


def resize_weights(lengths: Tensor, padded: int, out_size: int, antialias: bool) -> Tensor:
    """(B, out, padded) float32 row-stochastic 1-D bilinear weights from ``lengths`` px to ``out_size``.

    The same taps as ``F.interpolate(mode="bilinear", align_corners=False)`` (edge-clamped) or, with
    ``antialias``, as its antialiased kernel and PIL's bilinear ``resize`` (triangle stretched by the scale).
    """
    length = lengths.double()[:, None, None]  # (B, 1, 1)
    scale = length / out_size
    i = torch.arange(out_size, dtype=torch.float64, device=lengths.device)[None, :, None]  # (1, S, 1)
    j = torch.arange(padded, dtype=torch.float64, device=lengths.device)[None, None, :]  # (1, 1, P)
    if antialias:
        support = scale.clamp(min=1.0)
        w = (1 - ((j + 0.5 - scale * (i + 0.5)) / support).abs()).clamp(min=0)  # (B, S, P)
    else:
        src = torch.minimum((scale * (i + 0.5) - 0.5).clamp(min=0), length - 1)  # (B, S, 1)
        w = (1 - (j - src).abs()).clamp(min=0)  # (B, S, P)
    w = w * (j < length)
    return (w / w.sum(-1, keepdim=True)).float()


def resized_crop_loop(
    images: Sequence[np.ndarray],
    boxes: Tensor,
    size: int,
    flips: Tensor,
    antialias: bool = True,
    normalize: Normalize | None = None,
    num_threads: int = 1,
) -> Tensor:
    """(B, 3, S, S) uint8 (or normalised float32): crop every (H, W, 3) uint8 image, resize it on the CPU.

    Per image: a view of the crop, one ``F.interpolate`` on uint8 channels-last data (its AVX kernel), the
    flip, and with ``normalize`` the conversion to float while the image is still in the CPU cache. With
    ``num_threads > 1`` the images are shared among threads (the torch calls release the GIL).
    """
    dtype = torch.uint8 if normalize is None else torch.float32
    out = empty_cpu((len(images), 3, size, size), dtype)
    jobs = list(zip(range(len(images)), images, boxes.tolist(), flips.tolist()))

    def render(part: list) -> None:
        for k, img, (t, x0, h, w), flip in part:
            crop = torch.from_numpy(img[t : t + h, x0 : x0 + w]).permute(2, 0, 1)[
                None
            ]  # (1, 3, h, w) strided
            res = F.interpolate(
                crop, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
            )[0]  # (3, S, S) uint8
            res = res.flip(-1) if flip else res
            if normalize is None:
                out[k] = res
            else:
                normalize.into(res, out[k])

    n = max(1, min(num_threads, len(jobs)))
    if n == 1:
        render(jobs)
    else:
        list(_render_pool(n).map(render, [jobs[i::n] for i in range(n)]))
    return out


@functools.cache
def _render_pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="dcml-render")


def pad_crops(images: Sequence[np.ndarray], boxes: Tensor) -> Tensor:
    """(B, Hc, Wc, 3) uint8: every crop copied to the top-left corner of one zero-padded batch."""
    hc, wc = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    canvas = torch.zeros(len(images), hc, wc, 3, dtype=torch.uint8)
    for k, (img, (t, x0, h, w)) in enumerate(zip(images, boxes.tolist())):
        canvas[k, :h, :w] = torch.from_numpy(img[t : t + h, x0 : x0 + w])
    return canvas


def resized_crop_matmul(
    crops: Tensor, crop_hw: Tensor, size: int, flips: Tensor, antialias: bool = True, chunk: int = 32
) -> Tensor:
    """(B, 3, S, S) float in [0, 255], rounded like uint8 output: resize padded (B, Hc, Wc, 3) crops.

    Two batched matrix products per chunk of images: ``Wy @ X @ Wx^T`` with (B, S, Hc) and (B, S, Wc)
    weights; flipped images get their column weights reversed.
    """
    device = crops.device
    crop_hw, flips = crop_hw.to(device), flips.to(device)
    out = torch.empty(crops.shape[0], 3, size, size, device=device)
    for s in range(0, crops.shape[0], chunk):
        x = crops[s : s + chunk].permute(0, 3, 1, 2).float()  # (b, 3, Hc, Wc)
        wy = resize_weights(crop_hw[s : s + chunk, 0], x.shape[2], size, antialias)  # (b, S, Hc)
        wx = resize_weights(crop_hw[s : s + chunk, 1], x.shape[3], size, antialias)  # (b, S, Wc)
        wx = torch.where(flips[s : s + chunk, None, None], wx.flip(1), wx)
        out[s : s + chunk] = wy[:, None] @ x @ wx.transpose(1, 2)[:, None]  # (b, 3, S, S)
    return out.round_().clamp_(0, 255)


class Normalize:
    """``ToTensor -> Normalize(mean, std)`` (then RGB -> BGR for BN-Inception) on 0-255 images of a batch."""

    def __init__(self, arch_input: Literal["rgb", "bninception"] = "rgb") -> None:
        if arch_input not in ("rgb", "bninception"):
            raise ValueError(f"arch_input must be 'rgb' or 'bninception', got {arch_input!r}")
        rgb = arch_input == "rgb"
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if rgb else (BNINCEPTION_MEAN, BNINCEPTION_STD)
        self.bgr = arch_input == "bninception"
        order = [2, 1, 0] if self.bgr else [0, 1, 2]
        self.mean255 = torch.tensor([255.0 * mean[c] for c in order]).view(1, 3, 1, 1)
        self.inv_std255 = torch.tensor([1.0 / (255.0 * std[c]) for c in order]).view(1, 3, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 or 0-255 float -> normalised float32 on the same device.

        On the CPU image by image (each stays in the cache between the passes: ~5x faster than whole-batch
        passes over a large fresh tensor), elsewhere in three whole-batch operations.
        """
        if x.device.type == "cpu":
            out = empty_cpu(tuple(x.shape))
            for k in range(x.shape[0]):
                self.into(x[k], out[k])
            return out
        x = x.flip(1) if self.bgr else x
        mean, inv = self.mean255.to(x.device), self.inv_std255.to(x.device)
        return x.float().sub_(mean).mul_(inv)  # (B, 3, H, W)

    def into(self, x: Tensor, out: Tensor) -> None:
        """Normalise one (3, H, W) 0-255 image into the float32 tensor ``out`` (same device)."""
        out.copy_(x.flip(0) if self.bgr else x)
        out.sub_(self.mean255[0]).mul_(self.inv_std255[0])


@dataclass(frozen=True)
class CropParams:
    """Sampled augmentation of a batch: boxes in stored-image pixels (B, 4) and flips (B,)."""

    boxes: Tensor
    flips: Tensor

    def __getitem__(self, items: slice) -> CropParams:
        return CropParams(self.boxes[items], self.flips[items])


class BatchRandomResizedCrop:
    """RandomResizedCrop -> RandomHorizontalFlip -> ToTensor -> Normalize for a batch of uint8 images."""

    def __init__(
        self,
        size: int,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        arch_input: Literal["rgb", "bninception"] = "rgb",
        antialias: bool = True,
        resampler: Resampler = "auto",
        num_threads: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be a probability in [0, 1], got {flip_p}")
        if resampler not in ("auto", "loop", "matmul"):
            raise ValueError(f"resampler must be 'auto', 'loop' or 'matmul', got {resampler!r}")
        self.size, self.scale, self.ratio, self.flip_p = size, scale, ratio, flip_p
        self.antialias, self.resampler = antialias, resampler
        self.num_threads = num_threads  # CPU resampling threads; None: torch.get_num_threads() at each call
        self.normalize = Normalize(arch_input)

    def sample(self, original_hw: Tensor, stored_hw: Tensor) -> CropParams:
        """Draw boxes (on the original sizes, as the reference) and flips from the global torch generator."""
        boxes = sample_crop_boxes(original_hw[:, 0], original_hw[:, 1], self.scale, self.ratio)  # (B, 4)
        flips = torch.rand(boxes.shape[0]) < self.flip_p  # (B,)
        return CropParams(rescale_boxes(boxes, original_hw, stored_hw), flips)

    def apply(self, images: Sequence[np.ndarray], params: CropParams, device: torch.device) -> Tensor:
        """(B, 3, S, S) normalised float32 on ``device`` from the stored (H, W, 3) uint8 images."""
        device = torch.device(device)
        mode = self.resampler
        if mode == "auto":
            mode = "matmul" if device.type == "cuda" else "loop"
        if mode == "loop" and device.type == "cpu":
            threads = self.num_threads or torch.get_num_threads()
            return resized_crop_loop(
                images, params.boxes, self.size, params.flips, self.antialias, self.normalize, threads
            )
        if mode == "loop":
            pixels = resized_crop_loop(images, params.boxes, self.size, params.flips, self.antialias)
            return self.normalize(pixels.to(device, non_blocking=True))
        canvas = pad_crops(images, params.boxes)
        if device.type == "cuda":
            canvas = canvas.pin_memory()
        canvas = canvas.to(device, non_blocking=True)
        pixels = resized_crop_matmul(canvas, params.boxes[:, 2:], self.size, params.flips, self.antialias)
        return self.normalize(pixels)
