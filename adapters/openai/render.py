"""Rendering a coalition for a chat endpoint: a masked PNG and a prompt with masked words.

Image players are the patches of a rows x cols grid over the image as it is sent: the
photo is first shrunk (never enlarged) so that its longer side is at most ``image_size``
pixels, which bounds what each request costs in image tokens. A masked patch shows the
baseline's pixels (:mod:`multishap.adapters.pixels`; an endpoint's normalisation is
unknown, so its ``zero`` baseline is black).

Text players are the words of the text: maximal runs of non-whitespace characters, so
punctuation stays with its word ("cat?" is one player). A masked word is replaced by the
placeholder and the whitespace between words is kept as it was. The prompt is the
template with ``{text}`` replaced by the rendered text.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from multishap.adapters.backend import DecodedInstance
from multishap.adapters.pixels import baseline_array, patch_map, resized
from multishap.service.rpc.errors import InvalidArgument
from multishap.v1 import common_pb2

TEXT_SLOT = "{text}"
DEFAULT_TEMPLATE = "{text}\nAnswer with one word."
DEFAULT_PLACEHOLDER = "___"
DEFAULT_IMAGE_SIZE = 512
DETAILS = ("auto", "low", "high")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class RenderOptions:
    """How masked inputs are turned into a chat request."""

    template: str = DEFAULT_TEMPLATE
    placeholder: str = DEFAULT_PLACEHOLDER
    image_size: int = DEFAULT_IMAGE_SIZE
    detail: str = "auto"
    baseline: int = common_pb2.IMAGE_BASELINE_ZERO

    def __post_init__(self) -> None:
        if self.template.count(TEXT_SLOT) != 1:
            raise ValueError(f"the prompt template must contain {TEXT_SLOT} exactly once; got {self.template!r}")
        if self.detail not in DETAILS:
            raise ValueError(f"detail must be one of {', '.join(DETAILS)}; got {self.detail!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {self.image_size}")


def split_words(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the text's words: maximal runs of non-whitespace characters."""
    return [m.span() for m in _WORD.finditer(text)]


def sent_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """(height, width) after shrinking so that the longer side is at most ``limit``."""
    scale = min(1.0, limit / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class RenderedInput:
    """One coalition as the endpoint sees it."""

    pixels: np.ndarray  # (H, W, 3) uint8
    prompt: str

    def png(self) -> bytes:
        """The masked image as PNG bytes (deterministic; zlib level 1: 3.5x faster than 6, ~7% larger)."""
        out = io.BytesIO()
        Image.fromarray(self.pixels).save(out, format="PNG", compress_level=1)
        return out.getvalue()

    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png()).decode("ascii")

    def pixel_digest(self) -> str:
        """Hash of the masked pixels: stands for the image in cache keys (no PNG encoding needed)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.pixels).data)
        digest.update(repr(self.pixels.shape).encode())
        return digest.hexdigest()


class Renderer:
    """Renders coalitions of one instance."""

    def __init__(self, instance: DecodedInstance, options: RenderOptions) -> None:
        height, width = sent_size(*instance.image.shape[:2], options.image_size)
        if instance.rows > height or instance.cols > width:
            raise InvalidArgument(
                f"the grid {instance.rows}x{instance.cols} is finer than the {width}x{height} image that is sent "
                f"(image_size {options.image_size}): every patch needs at least one pixel"
            )
        self.options = options
        self.image = np.asarray(resized(instance.image, width, height), dtype=np.uint8)
        base = baseline_array(instance.image, width, height, instance.masking, np.zeros(3), options.baseline)
        self.base = np.round(base * 255.0).astype(np.uint8)
        self.patches = patch_map(height, width, instance.rows, instance.cols)
        self.num_patches = instance.rows * instance.cols
        self.text = instance.text
        self.spans = split_words(instance.text)
        if not self.spans:
            raise InvalidArgument("the text has no words to explain")
        self.words = [instance.text[a:b] for a, b in self.spans]

    def masked_text(self, present: np.ndarray) -> str:
        """The text with absent words replaced by the placeholder."""
        parts, last = [], 0
        for (start, end), keep in zip(self.spans, present):
            parts.append(self.text[last:start])
            parts.append(self.text[start:end] if keep else self.options.placeholder)
            last = end
        parts.append(self.text[last:])
        return "".join(parts)

    def render(self, mask: np.ndarray) -> RenderedInput:
        """The coalition ``mask`` (patches then words; True = present) as image and prompt."""
        m = self.num_patches
        keep = mask[:m][self.patches]
        pixels = np.where(keep[:, :, None], self.image, self.base)
        prompt = self.options.template.replace(TEXT_SLOT, self.masked_text(mask[m:]))
        return RenderedInput(pixels, prompt)
