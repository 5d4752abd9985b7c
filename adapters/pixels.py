"""Image masking shared by every adapter that renders pixels: the patch grid and the baselines.

A masked patch shows the baseline's pixels instead of the photo's. Baselines are defined
once here so that a local model and a remote endpoint mask the same way: ``zero`` (a
constant colour, the pixel the model normalises to 0 where that is known), ``mean`` (the
image's mean colour) and ``blur`` (a Gaussian blur of the original, radius in pixels of the
original image).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from multishap.service.rpc.convert import IMAGE_BASELINES
from multishap.v1 import common_pb2

DEFAULT_BLUR_RADIUS = 30.0
BASELINE_NAMES = {value: name for name, value in IMAGE_BASELINES.items()}


def patch_map(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """(height, width) array of patch ids, row-major over a rows x cols grid of near-equal cells."""
    row_of = np.searchsorted(np.round(np.linspace(0, height, rows + 1))[1:], np.arange(height), side="right")
    col_of = np.searchsorted(np.round(np.linspace(0, width, cols + 1))[1:], np.arange(width), side="right")
    return row_of[:, None] * cols + col_of[None, :]


def resized(pixels: np.ndarray, width: int, height: int) -> Image.Image:
    """The decoded (H, W, 3) uint8 image as an RGB PIL image of the given size (bicubic)."""
    image = Image.fromarray(pixels).convert("RGB")
    return image if image.size == (width, height) else image.resize((width, height), Image.BICUBIC)


def baseline_array(pixels: np.ndarray, width: int, height: int, options: common_pb2.MaskingOptions,
                   zero_rgb: np.ndarray, default: int) -> np.ndarray:
    """(height, width, 3) float32 baseline in [0, 1] at the rendered size.

    ``zero_rgb`` is the colour (3 values in [0, 1]) used for the zero baseline; ``default``
    is the ImageBaseline used when the request leaves it unspecified.
    """
    kind = options.image_baseline or default
    if kind == common_pb2.IMAGE_BASELINE_ZERO:
        return np.broadcast_to(np.asarray(zero_rgb, dtype=np.float32), (height, width, 3)).copy()
    if kind == common_pb2.IMAGE_BASELINE_MEAN:
        mean = (np.asarray(resized(pixels, width, height), dtype=np.float32) / 255.0).mean(axis=(0, 1))
        return np.broadcast_to(mean, (height, width, 3)).copy()
    if kind == common_pb2.IMAGE_BASELINE_BLUR:
        radius = options.blur_radius or DEFAULT_BLUR_RADIUS
        blurred = Image.fromarray(pixels).convert("RGB").filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(blurred.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0
    raise ValueError(f"unknown image baseline {kind}")
