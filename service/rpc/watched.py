"""Whether files changed since last asked: what the servers' TLS certificates and tokens file are reloaded on."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Optional


class FileStamps:
    """The (mtime, size, inode) of some files; :meth:`changed` is True once after any of them changes: an edit,
    a replace, or a Kubernetes Secret's symlink swap. A missing file is a stamp of its own."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths = [Path(p) for p in paths]
        self._lock = threading.Lock()
        self._seen = self._stamps()

    def _stamps(self) -> tuple[Optional[tuple[int, int, int]], ...]:
        stamps = []
        for path in self._paths:
            try:
                s = os.stat(path)
            except OSError:
                stamps.append(None)
                continue
            stamps.append((s.st_mtime_ns, s.st_size, s.st_ino))
        return tuple(stamps)

    def changed(self) -> bool:
        stamps = self._stamps()
        with self._lock:
            if stamps == self._seen:
                return False
            self._seen = stamps
            return True
