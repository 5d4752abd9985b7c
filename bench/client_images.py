"""What the SDK sends for an image file: its original bytes now, against the PNG re-encoding it used to make.

Prints, per photo size: the JPEG file's size, the request bytes and client CPU seconds of the old path
(decode, then encode PNG) and of the new one (read the file, check its header).

    python bench/client_images.py [--sides 1000 2000 4000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from multishap.client.images import encode_image, to_pil


def photo(side: int, path: Path) -> Path:
    """The astronaut photo resized to side x 3/4 side, as a quality-90 JPEG (a camera's kind of file)."""
    Image.fromarray(data.astronaut()).resize((side, side * 3 // 4), Image.BICUBIC).save(path, quality=90)
    return path


def cpu(fn) -> tuple[object, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def png_bytes(path: Path) -> bytes:
    """The old path: decode the file and encode it again as PNG."""
    buf = io.BytesIO()
    to_pil(path).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[1000, 2000, 4000])
    args = parser.parse_args()
    print("| photo | JPEG file | PNG re-encoded (old) | CPU old | sent now | CPU now |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            path = photo(side, Path(tmp) / f"photo-{side}.jpg")
            old, old_s = cpu(lambda: png_bytes(path))
            new, new_s = cpu(lambda: encode_image(path))
            assert np.array_equal(np.asarray(to_pil(new.data)), np.asarray(to_pil(path)))
            mb = 1e6
            print(f"| {side}x{side * 3 // 4} | {path.stat().st_size / mb:.1f} MB | {len(old) / mb:.1f} MB | "
                  f"{old_s:.2f} s | {len(new.data) / mb:.1f} MB | {new_s:.3f} s |")


if __name__ == "__main__":
    main()
