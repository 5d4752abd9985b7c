"""Built-in image perturbations for stability audits: JPEG re-encoding, Gaussian pixel noise and a
shift by a few pixels, each drawn from a numpy generator so that a seed fixes them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from multishap.service.math.validation import ArgumentError

JPEG_QUALITIES = (50, 95)
NOISE_STD = 8.0
MAX_SHIFT = 3


def check_image(image: object) -> np.ndarray:
    """``image`` as a uint8 (H, W) or (H, W, 3) array, or ArgumentError."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ArgumentError(f"image must be a uint8 array of shape (H, W) or (H, W, 3); got {arr.dtype} {arr.shape}")
    if min(arr.shape[:2]) < 2 * MAX_SHIFT + 1:
        raise ArgumentError(f"image must be at least {2 * MAX_SHIFT + 1} pixels on each side; got {arr.shape[:2]}")
    return arr


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image re-encoded as JPEG at ``quality``, then decoded."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image plus Gaussian pixel noise of standard deviation 8 (of 255), rounded and clipped."""
    return np.clip(np.rint(image + rng.normal(0.0, NOISE_STD, image.shape)), 0, 255).astype(np.uint8)


def shift(image: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """The image translated by ``offset`` = (dy, dx), each of at most 3 pixels, edges replicated."""
    dy, dx = offset
    pad = [(MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    h, w = image.shape[:2]
    return padded[MAX_SHIFT - dy : MAX_SHIFT - dy + h, MAX_SHIFT - dx : MAX_SHIFT - dx + w]


QUALITIES = tuple(range(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1))
OFFSETS = tuple((dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1) for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)
                if (dy, dx) != (0, 0))


def _without_replacement(choices: tuple, rng: np.random.Generator, repeats: int) -> list:
    """``repeats`` draws from ``choices``, all distinct until every choice is used (then the order repeats)."""
    order = rng.permutation(len(choices))
    return [choices[order[k % len(choices)]] for k in range(repeats)]


def perturbed_images(name: str, image: np.ndarray, seed: int, code: int, repeats: int) -> list[np.ndarray]:
    """The ``repeats`` perturbed images of ``name``: JPEG qualities (50..95) and shift offsets (a nonzero (dy, dx)
    of at most 3 pixels each) drawn without replacement from ``default_rng([seed, code])``, so repeats differ;
    noise for repeat k from ``default_rng([seed, code, k])``."""
    rng = np.random.default_rng([seed, code])
    if name == "jpeg":
        return [jpeg(image, q) for q in _without_replacement(QUALITIES, rng, repeats)]
    if name == "shift":
        return [shift(image, o) for o in _without_replacement(OFFSETS, rng, repeats)]
    if name == "noise":
        return [noise(image, np.random.default_rng([seed, code, k])) for k in range(repeats)]
    raise ArgumentError(f"unknown image perturbation {name!r}")
