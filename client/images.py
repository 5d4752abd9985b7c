"""Images as the SDK accepts them (a path, encoded bytes, a PIL image or an ndarray) and as a request carries them:
a file's bytes and encoded bytes go as they are, only pixels are encoded (as PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from multishap.service.rpc.imaging import ALLOWED_FORMATS

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


class EncodedImage:
    """An image as a request carries it: ``data`` (the bytes sent), ``name`` (the file name when it came from a
    path) and its pixels, decoded at most once and only when asked for."""

    def __init__(self, data: bytes, name: Optional[str] = None, pixels: Optional[np.ndarray] = None) -> None:
        self.data, self.name, self._pixels = data, name, pixels

    def pixels(self) -> np.ndarray:
        """The image as an (H, W, 3) uint8 array (for plotting), decoded from ``data`` on the first call."""
        if self._pixels is None:
            self._pixels = np.asarray(to_pil(self.data))
        return self._pixels


def encode_image(image: ImageLike) -> EncodedImage:
    """The image as a request carries it: a file's or the caller's encoded bytes unchanged, after a check of their
    header that the server accepts the format (ValueError when not); a PIL image or an array encoded as PNG."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        data = _read(path)
        _check_format(data, f"image file {str(path)!r}")
        return EncodedImage(data, path.name)
    if isinstance(image, (bytes, bytearray)):
        _check_format(bytes(image), "the image bytes")
        return EncodedImage(bytes(image))
    pil = to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return EncodedImage(buf.getvalue(), pixels=np.asarray(pil))


def content_bytes(image: ImageLike) -> bytes:
    """The bytes a request for this image carries, which identify its content (for a dataset's row keys)."""
    return encode_image(image).data


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"image file {str(path)!r} does not exist")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"image file {str(path)!r} could not be read ({exc.strerror})") from None


def _check_format(data: bytes, what: str) -> None:
    """Refuse what the server would: bytes that are not an image, or an image in a format it does not accept
    (PIL reads only the header here)."""
    try:
        Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS).close()
        return
    except Exception:  # noqa: BLE001 - named below, from an open that tries every format
        pass
    try:
        with Image.open(io.BytesIO(data)) as img:
            found = img.format
    except Exception:  # noqa: BLE001 - any decoder failure is the caller's input
        raise ValueError(f"{what} could not be decoded: it is not an image in a format PIL reads") from None
    raise ValueError(f"{what} is {found}, which the server does not accept; send {', '.join(ALLOWED_FORMATS)}")
