"""Real-model games with exact truth: the shipped zero-shot dual encoder, tabulated.

The ``imagenet-zeroshot`` adapter scores a coalition as the cosine of the masked image's and
the masked text's embeddings, so a whole game is two tables: the embedding of every one of
the 2^m masked images and of every one of the 2^n masked texts. Built once with the real
model (a 3x4 grid is 4,096 image encodes, minutes on two cores) and cached under
``bench/data/``; afterwards the game costs a gather and a dot product per coalition, and its
exact SII and BII come from the full 2^m x 2^n value table.

Usage: python bench/real_games.py            (build every table that is missing, print their sizes)
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from multishap.service.math.games import TabulatedGame

DATA = Path(__file__).with_name("data")
GRID = (3, 4)
# Photo (a scikit-image function), a caption of 10 MiniLM tokens or so, and a foil.
SCENES = {
    "chelsea": "a cat lying on a couch on a sunny afternoon",
    "coffee": "a cup of hot coffee on a saucer with a spoon",
    "rocket": "a white rocket standing on the launch pad at dawn",
}


def _table_path(name: str) -> Path:
    rows, cols = GRID
    return DATA / f"zeroshot-{name}-{rows}x{cols}.npz"


def build(name: str) -> Path:
    """Encode every masked image and text of one scene with the real model; returns the cache file."""
    from PIL import Image
    from skimage import data

    from multishap.adapters.hf import load_backend
    from multishap.adapters.instances import decode_instance
    from multishap.v1 import common_pb2

    rows, cols = GRID
    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).save(buf, format="PNG")
    instance = common_pb2.Instance(image=buf.getvalue(), text=SCENES[name], target=SCENES[name],
                                   grid=common_pb2.Grid(rows=rows, cols=cols))
    backend = load_backend("imagenet-zeroshot", micro_batch=8)
    prepared = backend.prepare(decode_instance(instance, 1 << 26))
    image_emb, text_emb = backend.tabulate(prepared)
    DATA.mkdir(exist_ok=True)
    path = _table_path(name)
    np.savez_compressed(path, image_emb=image_emb, text_emb=text_emb, tokens=np.array(prepared.tokens))
    return path


def load(name: str, build_missing: bool = True) -> TabulatedGame:
    """The tabulated game of one scene (built with the real model on first use)."""
    path = _table_path(name)
    if not path.exists():
        if not build_missing:
            raise FileNotFoundError(f"{path} is missing; run python bench/real_games.py")
        build(name)
    with np.load(path) as saved:
        image_emb, text_emb = saved["image_emb"], saved["text_emb"]
    m, n = int(np.log2(len(image_emb))), int(np.log2(len(text_emb)))
    return TabulatedGame(f"zeroshot {name} {GRID[0]}x{GRID[1]}x{n}", m, n, image_emb, text_emb)


def main() -> None:
    for name in sys.argv[1:] or SCENES:
        game = load(name)
        print(f"{game.name}: {game.m} patches x {game.n} tokens, tables {_table_path(name)}", flush=True)


if __name__ == "__main__":
    main()
