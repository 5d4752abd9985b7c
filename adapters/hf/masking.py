"""Rendering a coalition: image patches masked in pixel space, tokens masked in place.

Images are handled at the model's input resolution: the photo is resized once, its
baseline computed once, and each coalition picks, per patch of the rows x cols grid, the
photo's or the baseline's pixels. The picking runs on the model's device (the photo and
baseline are moved there once per instance; per micro-batch only the coalitions' bits
travel). Masked tokens are replaced by a mask (or pad) token and never deleted, so
positions and length stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from multishap.adapters.backend import DecodedInstance
from multishap.adapters.pixels import baseline_array, patch_map, resized
from multishap.service.rpc.errors import InvalidArgument, shown
from multishap.v1 import common_pb2

def to_tensor(image) -> torch.Tensor:
    """PIL RGB image or (H, W, 3) float array in [0, 1] -> (3, H, W) float tensor in [0, 1]."""
    array = np.asarray(image, dtype=np.float32)
    if isinstance(image, Image.Image):
        array = array / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def baseline(
    pixels: np.ndarray, size: int, options: common_pb2.MaskingOptions, zero_pixel: torch.Tensor, default: int
) -> torch.Tensor:
    """(3, size, size) baseline: zero in the model's normalised space, the mean colour, or a blur.

    ``zero_pixel`` is the per-channel pixel value the model normalises to 0; ``default`` is
    the ImageBaseline used when the request leaves it unspecified.
    """
    return to_tensor(baseline_array(pixels, size, size, options, zero_pixel.numpy(), default))


def mask_images(image: torch.Tensor, base: torch.Tensor, patches: np.ndarray | torch.Tensor,
                present: np.ndarray) -> torch.Tensor:
    """(B, 3, H, W) images on ``image``'s device: patch p shows ``image`` where present[b, p], else ``base``."""
    rows = torch.from_numpy(np.ascontiguousarray(present)).to(image.device)
    keep = rows[:, torch.as_tensor(patches, device=image.device)]
    return torch.where(keep[:, None], image[None], base[None])


def mask_tokens(ids: np.ndarray, present: np.ndarray, replacement: int) -> np.ndarray:
    """(B, n) token ids: token j kept where present[b, j], else ``replacement``."""
    return np.where(present, ids[None, :], replacement)


@dataclass(frozen=True)
class TextLayout:
    """A text as players: the user's tokens between the fixed special tokens."""

    ids: np.ndarray
    prefix: list[int]
    suffix: list[int]
    replacement: int


def text_layout(tokenizer, text: str, text_mask: str, max_length: int) -> tuple[TextLayout, list[str]]:
    """Split the tokenised text into players (no special or template tokens) and the rest."""
    special = set(tokenizer.all_special_ids)
    full = tokenizer(text)["input_ids"]
    players = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
    if not players:
        raise InvalidArgument(f"the text {shown(text)} has no tokens once special tokens are removed")
    if len(full) > max_length:
        raise InvalidArgument(f"the text has {len(full)} tokens; this model reads at most {max_length}")
    first = next(k for k, i in enumerate(full) if i not in special)
    last = max(k for k, i in enumerate(full) if i not in special)
    mask_id, pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id
    wanted = text_mask or ("mask" if mask_id is not None else "pad")
    if wanted not in ("mask", "pad"):
        raise InvalidArgument(f"text_mask must be 'mask' or 'pad' for this model; got {text_mask!r}")
    replacement = mask_id if wanted == "mask" and mask_id is not None else pad_id
    if replacement is None:
        raise InvalidArgument("this tokenizer has neither a mask nor a pad token to mask words with")
    layout = TextLayout(np.asarray(players), full[:first], full[last + 1 :], int(replacement))
    return layout, tokenizer.convert_ids_to_tokens(players)


@dataclass(frozen=True)
class MaskedInputs:
    """An instance ready to render any coalition at the model's input resolution."""

    image: torch.Tensor
    base: torch.Tensor
    patches: torch.Tensor  # (S, S) patch index of each pixel, on the image's device
    text: TextLayout

    def images(self, present: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] for rows of patch masks."""
        return mask_images(self.image, self.base, self.patches, present)

    def token_ids(self, present: np.ndarray) -> np.ndarray:
        """(B, L) full token ids (special tokens included) for rows of token masks."""
        ids = mask_tokens(self.text.ids, present, self.text.replacement)
        rows = len(ids)
        return np.concatenate([np.tile(self.text.prefix, (rows, 1)), ids, np.tile(self.text.suffix, (rows, 1))],
                              axis=1).astype(np.int64)


def image_inputs(instance: DecodedInstance, size: int, zero_pixel: torch.Tensor, default_baseline: int,
                 device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The image at the model's input size and its baseline, on ``device``, and the grid's patch map there."""
    if instance.rows > size or instance.cols > size:
        raise InvalidArgument(f"the grid {instance.rows}x{instance.cols} is finer than the model's "
                              f"{size}x{size} input: every patch needs at least one pixel")
    image = to_tensor(resized(instance.image, size, size)).to(device)
    base = baseline(instance.image, size, instance.masking, zero_pixel, default_baseline).to(device)
    return image, base, torch.from_numpy(patch_map(size, size, instance.rows, instance.cols)).to(device)


def masked_inputs(instance: DecodedInstance, size: int, zero_pixel: torch.Tensor, tokenizer, default_baseline: int,
                  max_text_tokens: int, device: torch.device = torch.device("cpu")) -> tuple[MaskedInputs, list[str]]:
    """Image inputs on ``device``, and the text split into players by the tokenizer."""
    image, base, patches = image_inputs(instance, size, zero_pixel, default_baseline, device)
    layout, tokens = text_layout(tokenizer, instance.text, instance.masking.text_mask, max_text_tokens)
    return MaskedInputs(image, base, patches, layout), tokens
