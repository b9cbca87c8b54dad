"""Image records of a data set, and the readers of class folders that every layout (and the demo set) uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_MAX_LISTED = 15


@dataclass(frozen=True)
class Record:
    """One image: its absolute path, its integer label and the name of its class."""

    path: str
    label: int
    class_name: str


@dataclass(frozen=True)
class SplitRecords:
    """The zero-shot split of a data set: disjoint train and test classes."""

    train: list[Record]
    test: list[Record]
    n_train_classes: int
    layout: str = ""  # which layout was read, e.g. "cub200/official"
    root: str = ""  # the data set folder that was read


def split_first_half(classes: dict[int, tuple[str, list[str]]]) -> tuple[list[Record], list[Record]]:
    """Zero-shot split of ``{label: (class name, paths)}``: the first half of the sorted labels is train."""
    if len(classes) < 2:
        raise ValueError(f"found {len(classes)} class(es); a zero-shot split needs at least 2")
    labels = sorted(classes)
    n_train = len(labels) // 2

    def records(keys: Iterable[int]) -> list[Record]:
        return [Record(p, k, classes[k][0]) for k in keys for p in classes[k][1]]

    return records(labels[:n_train]), records(labels[n_train:])


def image_files(folder: Path) -> list[str]:
    """Sorted image files of one class folder (hidden and AppleDouble ``._`` files skipped)."""
    files = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise ValueError(
            f"class folder '{folder}' contains no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return [str(folder / f) for f in files]


def class_folders(images: Path) -> list[Path]:
    """Class sub-folders of an ``images/`` folder (hidden ones skipped)."""
    folders = [
        p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".") and "._" not in p.name
    ]
    if not folders:
        raise ValueError(f"'{images}' has no class folders; found: {list_entries(images)}")
    return folders


def read_numbered_folders(images: Path) -> dict[int, tuple[str, list[str]]]:
    """``images/NNN.name/`` folders (CUB-style): label = NNN - 1."""
    classes: dict[int, tuple[str, list[str]]] = {}
    for folder in class_folders(images):
        prefix = folder.name.split(".")[0]
        if not prefix.isdigit():
            raise ValueError(
                f"class folder '{folder}' has no numeric prefix: expected names like "
                "'001.Black_footed_Albatross'"
            )
        label = int(prefix) - 1
        if label in classes:
            raise ValueError(f"two class folders in '{images}' share the number {prefix}: {folder.name}")
        classes[label] = (folder.name, image_files(folder))
    return classes


def list_entries(folder: Path) -> str:
    """The first entries of a folder, for error messages (``a/, b.txt, ... (12 more)``)."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:_MAX_LISTED]) or "(empty)"
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")
