"""Instances as an adapter receives them: checked and decoded, prepared by the backend once, then cached.

An instance's key is the hash of its serialised message, so equal instances share one
prepared entry across Score requests and the cache is bounded in entries and in bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Mapping, Optional

from multishap.adapters.backend import DecodedInstance, PreparedInstance, ScoringBackend
from multishap.service.math.validation import check_grid
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, shown
from multishap.service.rpc.imaging import decode_rgb
from multishap.service.rpc.request_checks import check_instance_fields, check_players
from multishap.v1 import common_pb2

DEFAULT_CACHE_ENTRIES = 64
DEFAULT_CACHE_BYTES = 1 << 30


def content_key(instance: common_pb2.Instance) -> str:
    """Hash of everything in the instance; equal instances share one cache entry."""
    return hashlib.sha256(instance.SerializeToString(deterministic=True)).hexdigest()


def decode_instance(instance: common_pb2.Instance, max_image_pixels: int) -> DecodedInstance:
    """Decode the image and check the grid against it."""
    pixels = decode_rgb(instance.image, max_image_pixels)
    rows, cols = instance.grid.rows, instance.grid.cols
    check_grid(rows, cols)
    height, width = pixels.shape[:2]
    if rows > height or cols > width:
        raise InvalidArgument(
            f"the patch grid {rows}x{cols} is larger than the {width}x{height} image: "
            "every patch needs at least one pixel"
        )
    return DecodedInstance(
        image=pixels,
        text=instance.text,
        target=instance.target,
        rows=rows,
        cols=cols,
        masking=instance.masking,
        parameters=dict(instance.parameters),
        key=content_key(instance),
    )


class InstanceCache:
    """Prepared instances by content hash: thread-safe, least recently used first out, bounded in entries and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[PreparedInstance, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def get(self, key: str) -> Optional[PreparedInstance]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            return None

    def put(self, key: str, value: PreparedInstance, size: int) -> None:
        """Keep ``value`` (``size`` bytes), evicting the least recently used; one larger
        than the whole cache is not kept."""
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self.bytes += size
            while len(self._items) > self._max_entries or self.bytes > self._max_bytes:
                self.bytes -= self._items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._items)


class PreparedInstances:
    """The backend's prepared instances: each instance checked, decoded and prepared once, then served from the cache."""

    def __init__(self, backend: ScoringBackend, limits: Limits, cache_entries: int = DEFAULT_CACHE_ENTRIES,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.backend, self.limits = backend, limits
        self.cache = InstanceCache(cache_entries, cache_bytes)

    def get(self, instance: common_pb2.Instance) -> PreparedInstance:
        """The instance prepared by the backend, from the cache when seen before."""
        key = content_key(instance)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        check_instance_fields(instance, self.limits)
        self._check_parameters(instance.parameters)
        prepared = self.backend.prepare(decode_instance(instance, self.limits.max_image_pixels))
        if not prepared.tokens:
            raise InvalidArgument("the text has no tokens to explain")
        check_players(prepared.num_patches, len(prepared.tokens), self.limits)
        self.cache.put(key, prepared, prepared.decoded.image.nbytes)
        return prepared

    def _check_parameters(self, parameters: Mapping[str, str]) -> None:
        known = self.backend.parameters
        unknown = sorted(set(parameters) - set(known))
        if unknown:
            listed = ", ".join(f"{name} ({meaning})" for name, meaning in known.items()) or "none"
            raise InvalidArgument(f"unknown instance parameter {shown(unknown[0])}; this adapter's parameters: "
                                  f"{listed}")
