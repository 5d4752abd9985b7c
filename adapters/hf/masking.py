"""Rendering a coalition: image patches masked in pixel space, tokens masked in place.

Images are handled at the model's input resolution: the photo is resized once, its
baseline computed once, and each coalition picks, per patch of the rows x cols grid, the
photo's or the baseline's pixels. Masked tokens are replaced by a mask (or pad) token and
never deleted, so positions and length stay as they were.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

from multishap.v1 import common_pb2

DEFAULT_BLUR_RADIUS = 30.0


def patch_map(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """(height, width) array of patch ids, row-major over a rows x cols grid of near-equal cells."""
    row_of = np.searchsorted(np.round(np.linspace(0, height, rows + 1))[1:], np.arange(height), side="right")
    col_of = np.searchsorted(np.round(np.linspace(0, width, cols + 1))[1:], np.arange(width), side="right")
    return row_of[:, None] * cols + col_of[None, :]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def model_input(pixels: np.ndarray, size: int) -> Image.Image:
    """The decoded (H, W, 3) uint8 image resized to the model's square input."""
    return Image.fromarray(pixels).convert("RGB").resize((size, size), Image.BICUBIC)


def baseline(
    pixels: np.ndarray, size: int, options: common_pb2.MaskingOptions, zero_pixel: torch.Tensor, default: int
) -> torch.Tensor:
    """(3, size, size) baseline: zero in the model's normalised space, the mean colour, or a blur.

    ``zero_pixel`` is the per-channel pixel value the model normalises to 0; ``default`` is
    the ImageBaseline used when the request leaves it unspecified.
    """
    kind = options.image_baseline or default
    image = model_input(pixels, size)
    if kind == common_pb2.IMAGE_BASELINE_ZERO:
        return zero_pixel.view(3, 1, 1).expand(3, size, size).clone()
    if kind == common_pb2.IMAGE_BASELINE_MEAN:
        return to_tensor(image).mean(dim=(1, 2), keepdim=True).expand(3, size, size).clone()
    if kind == common_pb2.IMAGE_BASELINE_BLUR:
        radius = options.blur_radius or DEFAULT_BLUR_RADIUS
        blurred = Image.fromarray(pixels).convert("RGB").filter(ImageFilter.GaussianBlur(radius))
        return to_tensor(blurred.resize((size, size), Image.BICUBIC))
    raise ValueError(f"unknown image baseline {kind}")


def mask_images(image: torch.Tensor, base: torch.Tensor, patches: np.ndarray, present: np.ndarray) -> torch.Tensor:
    """(B, 3, H, W) images: patch p shows ``image`` where present[b, p], else ``base``."""
    keep = torch.from_numpy(np.ascontiguousarray(present[:, patches]))
    return torch.where(keep[:, None], image[None], base[None])


def mask_tokens(ids: np.ndarray, present: np.ndarray, replacement: int) -> np.ndarray:
    """(B, n) token ids: token j kept where present[b, j], else ``replacement``."""
    return np.where(present, ids[None, :], replacement)
