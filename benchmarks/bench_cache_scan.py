"""The stat scan that names a data set's decoded cache (``SourceFiles.scan``), run by every trial process twice
(the verified-split marker and the cache itself): against the previous computation of its root and relative
paths (``os.path.commonpath`` over every file's folder, ``os.path.relpath`` per file), in the same run.

Empty files in the layout of a data set (``<class folder>/<image>``) are created in a temporary folder; both
computations stat every file. Usage::

    python benchmarks/bench_cache_scan.py                  # CUB size (11,788 files in 200 folders)
    python benchmarks/bench_cache_scan.py --files 120053 --folders 22634   # Stanford Online Products size

Prints the times and the ratio (no JSON: docs/performance.md quotes them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import LoadMonitor, describe_load  # noqa: I001 - common first: it puts the repository on sys.path

from dcml_core.data.cache_keys import SourceFiles


def previous_scan(paths: list[str]) -> tuple[Path, tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """The computation before 2026-12-03: the same result, commonpath over every file and relpath per file."""
    unique = sorted({os.path.abspath(p) for p in paths})
    root = Path(os.path.commonpath([os.path.dirname(p) for p in unique]))
    stats = []
    for p in unique:
        st = os.stat(p)
        stats.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return root, tuple(os.path.relpath(p, root) for p in unique), tuple(stats)


def median_s(fn, paths: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(paths)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=11788, help="image files (default: CUB's 11,788)")
    p.add_argument("--folders", type=int, default=200, help="class folders (default: CUB's 200)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as tmp:
        root = Path(tmp) / "images"
        paths = []
        for i in range(args.files):
            folder = root / f"{i % args.folders:05d}.class"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i:06d}.jpg"
            path.touch()
            paths.append(str(path))
        new = SourceFiles.scan(paths)
        assert (new.root, new.relpaths, new.stats) == previous_scan(paths)  # the same manifest, the same cache
        monitor = LoadMonitor()
        before = median_s(previous_scan, paths, args.rounds)
        after = median_s(SourceFiles.scan, paths, args.rounds)
        load = monitor.stop()
    print(f"{args.files} files in {args.folders} folders, median of {args.rounds}:")
    print(f"  commonpath over every file + relpath per file  {before * 1e3:8.1f} ms")
    print(f"  SourceFiles.scan                                {after * 1e3:8.1f} ms   ({before / after:.2f}x)")
    print(describe_load(load))


if __name__ == "__main__":
    main()
