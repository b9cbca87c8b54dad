"""Which cache folder holds the current decoding of a data set's files: stat manifests and content keys.

Freshness. The folder key is a blake2b hash of (format, cache size, and the relative path, size and blake2b
digest of the bytes of every file). On every open, a cheap stat manifest (size, mtime_ns, ctime_ns of every
file) names an alias that points at a content folder; if any stat changed, the bytes are hashed again
(~0.6 GB/s per core), so a touched file reuses the folder and a changed file gets a new folder. ctime cannot
be set from user space, so an edit that restores the old mtime is still caught. ``verify="content"`` hashes
on every open. Builds run under an exclusive ``fcntl.flock`` per key, into a temporary folder renamed into
place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CACHE_FORMAT = 1
_CHUNK = 1 << 20
_MAX_LISTED = 5


@dataclass(frozen=True)
class SourceFiles:
    """The image files of a data set: common root, sorted relative paths and their (size, mtime, ctime)."""

    root: Path
    relpaths: tuple[str, ...]
    stats: tuple[tuple[int, int, int], ...]

    @classmethod
    def scan(cls, paths: Sequence[str | Path]) -> SourceFiles:
        """Stat every file (FileNotFoundError naming the missing ones)."""
        unique = sorted({os.path.abspath(p) for p in paths})
        if not unique:
            raise ValueError("the decoded-image cache got no image files")
        root = os.path.commonpath(list({os.path.dirname(p) for p in unique}))  # over the folders: 100x fewer
        stats, missing = [], []
        for p in unique:
            try:
                st = os.stat(p)
                stats.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                missing.append(p)
        if missing:
            listed = ", ".join(missing[:_MAX_LISTED]) + (" ..." if len(missing) > _MAX_LISTED else "")
            raise FileNotFoundError(f"{len(missing)} image files do not exist: {listed}")
        cut = len(os.path.join(root, ""))  # every path starts with root + "/": its rest is os.path.relpath's answer
        return cls(Path(root), tuple(p[cut:] for p in unique), tuple(stats))

    def manifest_key(self, cache_size: int) -> str:
        """Hash of the stat manifest: cheap, changes whenever a file is written, touched or replaced."""
        text = json.dumps([CACHE_FORMAT, cache_size, str(self.root), self.relpaths, self.stats])
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def digests(self, num_threads: int | None = None) -> list[str]:
        """blake2b digest of the bytes of every file, in a thread pool (hashlib releases the GIL)."""
        paths = [self.root / r for r in self.relpaths]
        with ThreadPoolExecutor(max_workers=default_threads(num_threads)) as pool:
            return list(pool.map(file_digest, paths, chunksize=64))


def file_digest(path: str | Path) -> str:
    """blake2b (128 bit) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_key(
    relpaths: Sequence[str], sizes: Sequence[int], digests: Sequence[str], cache_size: int
) -> str:
    """The cache folder key: format, cache size and (relative path, size, digest) of every file."""
    h = hashlib.blake2b(f"dcml-decoded-cache {CACHE_FORMAT} {cache_size}\n".encode(), digest_size=16)
    for rel, size, digest in zip(relpaths, sizes, digests):
        h.update(f"{rel}\t{size}\t{digest}\n".encode())
    return h.hexdigest()


def default_threads(num_threads: int | None) -> int:
    return num_threads or min(8, 2 * (os.cpu_count() or 1))
