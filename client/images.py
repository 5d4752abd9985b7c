"""Images as the SDK accepts them: a path, encoded bytes, a PIL image or an ndarray."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

ImageLike = Union[str, Path, bytes, "Image.Image", np.ndarray]


def to_pil(image: ImageLike) -> Image.Image:
    """The image as an RGB PIL image; ValueError with a sentence when it is not one."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        try:
            return Image.open(io.BytesIO(image)).convert("RGB")
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"the image bytes could not be decoded ({exc})") from exc
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - any decoder or read failure is the caller's input
            raise ValueError(f"image file {str(path)!r} could not be decoded ({exc})") from exc
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got {image.shape}")
        if arr.dtype.kind == "f":
            arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255)
        return Image.fromarray(arr[..., :3].astype(np.uint8))
    raise ValueError(f"an image must be a path, bytes, a PIL image or an ndarray; got {type(image).__name__}")


def to_png(image: ImageLike) -> bytes:
    """Encoded bytes are passed through; everything else is encoded as PNG."""
    if isinstance(image, (bytes, bytearray)):
        to_pil(image)
        return bytes(image)
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def content_bytes(image: ImageLike) -> bytes:
    """Bytes that identify the image's content (a file's bytes, encoded bytes as given, else its PNG), for keys."""
    if isinstance(image, (str, Path)):
        try:
            return Path(image).read_bytes()
        except OSError as exc:
            raise ValueError(f"image file {str(image)!r} could not be read ({exc.strerror})") from None
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    return to_png(image)
