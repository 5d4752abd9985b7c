"""Instances as an adapter receives them: checked and decoded, prepared by the backend once, then cached.

An instance's key is the hash of its serialised message, so equal instances share one
prepared entry across Score requests and the cache is bounded in entries and in bytes.
The key is also the instance's digest on the wire: a request may name a cached instance by
it instead of carrying the instance (and its image) again.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Mapping, Optional

from multishap.adapters.backend import DecodedInstance, PreparedInstance, ScoringBackend
from multishap.service.math.validation import check_grid
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, NotFound, shown
from multishap.service.rpc.imaging import decode_rgb
from multishap.service.rpc.request_checks import check_instance_fields, check_players
from multishap.v1 import common_pb2

DEFAULT_CACHE_ENTRIES = 64
DEFAULT_CACHE_BYTES = 1 << 30
# A digest is a content key: a SHA-256 as lowercase hex.
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SHORT_DIGEST_CHARS = 12


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

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

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

    def resolve(self, instance: Optional[common_pb2.Instance], digest: str) -> PreparedInstance:
        """The prepared instance a request names: its ``instance`` when it carries one (a digest beside
        it is checked but not needed), else the one cached under ``digest``; NotFound when that is no
        longer held."""
        if digest and not _DIGEST.fullmatch(digest):
            raise InvalidArgument(f"instance_digest must be the 64 lowercase hexadecimal characters an earlier "
                                  f"ScoreResponse returned; got {shown(digest)}")
        if instance is not None:
            return self.get(instance)
        if not digest:
            raise InvalidArgument("the request carries neither an instance nor an instance_digest: send the "
                                  "instance (or the digest an earlier ScoreResponse returned)")
        hit = self.cache.get(digest)
        if hit is None:
            raise NotFound(f"this adapter no longer holds instance {digest[:_SHORT_DIGEST_CHARS]}; "
                           "send the instance again")
        return hit

    def digest(self, prepared: PreparedInstance) -> str:
        """The digest a later request may name ``prepared`` by, or "" when the cache does not hold it
        (it was larger than the whole cache, or already evicted)."""
        key = prepared.decoded.key
        return key if key in self.cache else ""

    def _check_parameters(self, parameters: Mapping[str, str]) -> None:
        known = self.backend.parameters
        unknown = sorted(set(parameters) - set(known))
        if unknown:
            listed = ", ".join(f"{name} ({meaning})" for name, meaning in known.items()) or "none"
            raise InvalidArgument(f"unknown instance parameter {shown(unknown[0])}; this adapter's parameters: "
                                  f"{listed}")
