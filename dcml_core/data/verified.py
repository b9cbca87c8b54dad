"""Image verification paid once per machine, not once per trial.

:func:`verify_splits` opens every image of the splits with PIL ``verify()`` (:func:`verify_images`) the first
time a set of files is seen on a machine, and records that they all passed in the decoded-image cache home
(``<home>/verified/<key>``). The key hashes the stat manifest of the files (path, size, mtime_ns and ctime_ns
of each: :class:`~dcml_core.data.cache_keys.SourceFiles`, the same manifest that names the decoded cache), so
a later call, in the same process (a reused Ray worker), in another trial or in a restarted worker, stats the
files and finds the record; a written, touched or replaced file changes the key and is verified again. A set
with unreadable or missing files is never recorded: every call reports (or skips) them again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dcml_core.data.cache_keys import SourceFiles
from dcml_core.data.dataset import verify_images
from dcml_core.data.records import Record

VERIFY_FORMAT = 1
FOLDER = "verified"


def verified_marker(paths: list[str], home: str | Path | None = None) -> Path | None:
    """The record of a successful verification of ``paths`` in their current state (None if a file is missing)."""
    from dcml_core.data.cache import default_cache_home

    if not paths:
        return None
    try:
        src = SourceFiles.scan(paths)
    except (OSError, ValueError):
        return None  # missing files: verify_images names them
    text = json.dumps(["verified", VERIFY_FORMAT, str(src.root), src.relpaths, src.stats])
    key = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return (Path(home).expanduser() if home is not None else default_cache_home()) / FOLDER / key


def verify_splits(
    splits: dict[str, list[Record]], skip_bad: bool, home: str | Path | None = None
) -> tuple[dict[str, list[Record]], list[str]]:
    """Every split's readable records and the bad paths (see :func:`verify_images`: raises ``ValueError`` for
    bad files unless ``skip_bad``); skipped when this machine verified the same files before (see the module)."""
    marker = verified_marker([r.path for records in splits.values() for r in records], home)
    if marker is not None and marker.is_file():
        return {name: list(records) for name, records in splits.items()}, []
    out, bad = {}, []
    for name, records in splits.items():
        out[name], bad_here = verify_images(records, skip_bad=skip_bad)
        bad += bad_here
    if marker is not None and not bad:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only cache home: verified again next time
    return out, bad
