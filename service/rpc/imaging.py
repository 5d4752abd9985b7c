"""Decoding the images requests carry: an allow-list of formats and a pixel limit checked
from the header, before any pixel is decoded (a small file can declare a huge image)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from multishap.service.rpc.errors import InvalidArgument, ResourceExhausted

# Raster formats a request may carry. Never EPS/PS (PIL hands those to Ghostscript) nor
# formats with a scripting or vector layer.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of the encoded image, read from its header; refused when not an
    allowed format (INVALID_ARGUMENT) or over ``max_pixels`` (RESOURCE_EXHAUSTED)."""
    with _opened(data, max_pixels) as img:
        return img.size


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """The image as an (H, W, 3) uint8 array, checked as :func:`image_size` checks it."""
    with _opened(data, max_pixels) as img:
        try:
            return np.asarray(img.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt body is the caller's input
            raise InvalidArgument(f"the image could not be decoded ({type(exc).__name__})") from None


def _opened(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidArgument("the instance has no image bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise ResourceExhausted(f"the image declares more pixels than PIL decodes safely "
                                f"({2 * Image.MAX_IMAGE_PIXELS}); this server's limit max_image_pixels = "
                                f"{max_pixels}", limit="max_image_pixels") from None
    except Exception:  # noqa: BLE001 - any decoder failure is the caller's input
        raise InvalidArgument(f"the image could not be decoded: send {', '.join(ALLOWED_FORMATS)}") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ResourceExhausted(f"the image is {width}x{height} = {width * height} pixels, over this server's "
                                f"limit max_image_pixels = {max_pixels}", limit="max_image_pixels")
    return img
