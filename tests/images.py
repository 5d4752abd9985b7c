"""Small encoded test images built in memory."""

import io

import numpy as np
from PIL import Image


def png(width: int = 32, height: int = 24, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
