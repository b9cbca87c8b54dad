"""Decoded-image cache: a data set decoded once per machine into one memory-mapped uint8 file.

Decoding JPEGs dominates the reference input pipeline (algorithms.md §4), and every trial of a sweep decodes
the same files every epoch. Here each data set is decoded once; every trial on the machine maps the same file,
so the pages sit once in the page cache.

Folder ``<home>/<name>-s<cache_size>-<key>/`` (``home`` = ``$DCML_CACHE_HOME`` or
``~/.cache/dcml_tune/decoded``):

- ``images.u8``: all images back to back, each (H, W, 3) uint8 RGB row-major (as PIL decodes), no padding;
- ``index.npy``: (N, 5) int64 rows ``offset, stored_h, stored_w, original_h, original_w``;
- ``meta.json``: format, cache size, relative paths (row order), size and blake2b digest of every file;
- ``eval_r<R>_c<C>.u8``: (N, C, C, 3) eval inputs ``Resize(R) -> CenterCrop(C)``, built on first use.

Layout trade-off. A padded square array (N, S, S, 3) would index batches in one operation, but it wastes the
padding (a 500x375 CUB image padded to 500x500: +33 %) and forces either cropping the long side, which changes
what RandomResizedCrop can sample (it samples from the whole image), or shrinking by the long side, which
loses resolution. The flat blob keeps each whole image at its aspect ratio with no waste, and each image is a
zero-copy view; the price is variable sizes, so the batch resampler loops over images on the CPU or pads the
crops on a GPU (``batch_augment``).

Resolution. An image whose shorter side exceeds ``cache_size`` is resized like torchvision's
``Resize(cache_size)`` on PIL (bilinear, antialiased); smaller images are stored unchanged. With the default
(``2 * resize_size`` = 512) all of CUB (at most 500 px) is stored unchanged, so its crops are the reference
crops. For a larger image, every crop with at least ``crop_size`` pixels on its shorter side at 512 px
(area about (224/512)^2 = 19 % of the image and more) is still a downscale, as in the reference; smaller
crops are upscaled from the cached pixels and come out a little softer than from the original. A
``cache_size`` above the largest shorter side stores every image unchanged. Eval inputs are always exact:
images stored reduced are decoded again from their (hash-checked) original files for ``eval_crops``.

Freshness (which folder holds the current decoding of the files) is decided in ``cache_keys.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from dcml_core.data.cache_keys import CACHE_FORMAT, SourceFiles, content_key, default_threads
from dcml_core.data.dataset import open_rgb


def default_cache_home() -> Path:
    """``$DCML_CACHE_HOME`` if set, else ``~/.cache/dcml_tune/decoded``."""
    home = os.environ.get("DCML_CACHE_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "dcml_tune" / "decoded").expanduser()


def stored_size(height: int, width: int, cache_size: int) -> tuple[int, int]:
    """(H, W) kept in the cache: torchvision's ``Resize(cache_size)`` size if the shorter side exceeds it."""
    if min(height, width) <= cache_size:
        return height, width
    if width <= height:
        return int(cache_size * height / width), cache_size
    return cache_size, int(cache_size * width / height)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``path`` (created if needed; never deleted, which would race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class DecodedCache:
    """An opened cache folder: zero-copy (H, W, 3) uint8 views of every image, by row or by path."""

    def __init__(self, folder: str | Path, root: str | Path, built: bool = False) -> None:
        self.folder, self.root, self.built = Path(folder), Path(root), built
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.relpaths: list[str] = self.meta["relpaths"]
        self.cache_size: int = self.meta["cache_size"]
        self.index = np.load(self.folder / "index.npy")  # (N, 5) offset, stored h, w, original h, w
        # Copy-on-write mapping: writable (torch.from_numpy accepts it), pages shared with other processes.
        self.blob = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="c")
        self._rows = {str(self.root / r): i for i, r in enumerate(self.relpaths)}

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getstate__(self) -> dict:
        return {"folder": str(self.folder), "root": str(self.root), "built": self.built}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["root"], state["built"])

    @property
    def stored_hw(self) -> np.ndarray:
        """(N, 2) height and width of every image as stored."""
        return self.index[:, 1:3]

    @property
    def original_hw(self) -> np.ndarray:
        """(N, 2) height and width of every original file."""
        return self.index[:, 3:5]

    def image(self, row: int) -> np.ndarray:
        """The stored (H, W, 3) uint8 image of ``row`` (a view into the mapped file)."""
        offset, h, w = (int(v) for v in self.index[row, :3])
        return self.blob[offset : offset + h * w * 3].reshape(h, w, 3)

    def rows(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Cache rows of image paths (KeyError naming paths that are not in the cache)."""
        absolute = [os.path.abspath(p) for p in paths]
        missing = [p for p in absolute if p not in self._rows]
        if missing:
            raise KeyError(f"{len(missing)} paths are not in the cache {self.folder}, e.g. {missing[0]}")
        return np.asarray([self._rows[p] for p in absolute], dtype=np.int64)

    def eval_crops(self, resize_size: int, crop_size: int, num_threads: int | None = None) -> np.ndarray:
        """(N, C, C, 3) uint8 ``Resize(resize_size) -> CenterCrop(crop_size)`` of every image, built once."""
        if not 1 <= crop_size <= resize_size:
            raise ValueError(f"need 1 <= crop_size <= resize_size, got {crop_size} and {resize_size}")
        path = self.folder / f"eval_r{resize_size}_c{crop_size}.u8"
        shape = (len(self), crop_size, crop_size, 3)
        if not path.exists():
            with file_lock(self.folder.parent / "locks" / f"{self.folder.name}.eval.lock"):
                if not path.exists():
                    self._build_eval(path, shape, resize_size, num_threads)
        return np.memmap(path, dtype=np.uint8, mode="c", shape=shape)

    def _build_eval(self, path: Path, shape: tuple, resize_size: int, num_threads: int | None) -> None:
        from torchvision import transforms as T

        tf = T.Compose([T.Resize(resize_size), T.CenterCrop(shape[1])])  # the reference eval steps on PIL
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.folder)
        os.close(fd)
        try:
            _fill_rows(Path(tmp), shape, lambda row: np.asarray(tf(self._original_image(row))), num_threads)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _original_image(self, row: int) -> Image.Image:
        """The original RGB image: the stored pixels if unchanged, else the file checked by digest."""
        if (self.stored_hw[row] == self.original_hw[row]).all():
            return Image.fromarray(self.image(row))
        data = (self.root / self.relpaths[row]).read_bytes()
        if hashlib.blake2b(data, digest_size=16).hexdigest() != self.meta["digests"][row]:
            raise RuntimeError(
                f"'{self.root / self.relpaths[row]}' changed after the cache {self.folder} was opened; "
                "open the cache again (it will be rebuilt)"
            )
        return open_rgb(io.BytesIO(data))


def open_cache(
    paths: Sequence[str | Path],
    cache_size: int,
    *,
    home: str | Path | None = None,
    name: str = "images",
    verify: Literal["stat", "content"] = "stat",
    num_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DecodedCache:
    """Open the decoded cache of ``paths``, building it first if no cache of their current content exists.

    ``verify="stat"`` trusts an alias whose stat manifest (size, mtime_ns, ctime_ns of every file) is
    unchanged and hashes the files otherwise; ``verify="content"`` hashes them on every open.
    """
    if cache_size < 1:
        raise ValueError(f"cache_size must be a positive number of pixels, got {cache_size}")
    if verify not in ("stat", "content"):
        raise ValueError(f"verify must be 'stat' or 'content', got {verify!r}")
    say = progress or (lambda msg: None)
    src = SourceFiles.scan(paths)
    home = Path(home).expanduser() if home is not None else default_cache_home()
    (home / "aliases").mkdir(parents=True, exist_ok=True)
    alias = home / "aliases" / f"{src.manifest_key(cache_size)}.json"
    if verify == "stat" and alias.is_file():
        folder = home / json.loads(alias.read_text())["folder"]
        if (folder / "meta.json").is_file():
            return DecodedCache(folder, src.root)
    say(f"hashing {len(src.relpaths)} image files under {src.root}")
    digests = src.digests(num_threads)
    key = content_key(src.relpaths, [s[0] for s in src.stats], digests, cache_size)
    folder = home / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-s{cache_size}-{key[:24]}"
    built = False
    with file_lock(home / "locks" / f"{key}.lock"):
        if not (folder / "meta.json").is_file():
            say(f"decoding {len(src.relpaths)} images into {folder}")
            _build(src, digests, cache_size, folder, num_threads)
            built = True
    _write_atomic(alias, json.dumps({"folder": folder.name}))
    return DecodedCache(folder, src.root, built)


def _build(
    src: SourceFiles, digests: list[str], cache_size: int, folder: Path, num_threads: int | None
) -> None:
    """Decode every file into a temporary folder, then rename it to ``folder`` (atomic)."""
    paths = [src.root / r for r in src.relpaths]
    with ThreadPoolExecutor(max_workers=default_threads(num_threads)) as pool:
        original = np.asarray(list(pool.map(_header_hw, paths, chunksize=64)), dtype=np.int64)  # (N, 2)
    stored = np.asarray([stored_size(int(h), int(w), cache_size) for h, w in original], dtype=np.int64)
    nbytes = stored[:, 0] * stored[:, 1] * 3  # (N,)
    offsets = np.concatenate([[0], np.cumsum(nbytes)[:-1]])  # (N,)
    total = int(nbytes.sum())
    free = shutil.disk_usage(folder.parent).free
    if total > free:
        raise OSError(
            f"the decoded cache needs {total / 1e9:.2f} GB but {folder.parent} has {free / 1e9:.2f} GB free: "
            "free space, set DCML_CACHE_HOME to a larger disk, or lower data.cache_size"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.build-", dir=folder.parent))
    try:
        flat = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(total,))

        def decode(row: int) -> None:
            h, w = (int(v) for v in stored[row])
            img = open_rgb(paths[row])
            if img.size != (original[row, 1], original[row, 0]):
                raise OSError(f"'{paths[row]}' decodes to {img.size}, not to the size in its header")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)  # what torchvision's Resize does on PIL images
            flat[offsets[row] : offsets[row] + nbytes[row]] = np.asarray(img).reshape(-1)

        with ThreadPoolExecutor(max_workers=default_threads(num_threads)) as pool:
            list(pool.map(decode, range(len(paths)), chunksize=16))
        flat.flush()
        np.save(tmp / "index.npy", np.column_stack([offsets, stored, original]).astype(np.int64))
        meta = {"format": CACHE_FORMAT, "cache_size": cache_size, "source_root": str(src.root),
                "relpaths": list(src.relpaths), "sizes": [s[0] for s in src.stats], "digests": digests,
                "n_bytes": total, "n_resized": int((stored != original).any(1).sum())}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta))  # last: a folder with meta.json is complete
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fill_rows(
    path: Path, shape: tuple, render: Callable[[int], np.ndarray], num_threads: int | None
) -> None:
    """Write ``render(row)`` for every row into a new (shape) uint8 memmap file, in a thread pool."""
    out = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)

    def one(row: int) -> None:
        out[row] = render(row)

    with ThreadPoolExecutor(max_workers=default_threads(num_threads)) as pool:
        list(pool.map(one, range(shape[0]), chunksize=32))
    out.flush()


def _header_hw(path: Path) -> tuple[int, int]:
    """(H, W) from the file header (no decoding)."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as err:  # PIL raises several types for broken files
        raise OSError(f"cannot read image '{path}' for the decoded cache: {err}") from err
