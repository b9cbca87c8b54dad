"""Read CUB200-2011, CARS196 and SOP folder layouts into class-disjoint train/test records (algorithms.md §4).

Two layouts are accepted per data set: the one documented by the Revisiting/DiVA/DCML READMEs
(``<root>/images/<class folder>/...``, plus ``Info_Files/Ebay_{train,test}.txt`` for SOP) and the layout of
the official archives (``CUB_200_2011/`` with its txt files, ``car_ims/`` + ``cars_annos.mat``,
``Stanford_Online_Products/`` with ``Ebay_{train,test}.txt``). Records are ordered by label, then by file,
which is the index order of the reference datasets (``BaseDataset.init_setup``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from dcml_core.data.demo import load_demo_records
from dcml_core.data.records import (
    Record,
    SplitRecords,
    class_folders,
    image_files,
    list_entries,
    read_numbered_folders,
    split_first_half,
)

DATASETS = ("cub200", "cars196", "online_products", "demo")
_ALIASES = {
    "cub200": "cub200", "cub": "cub200", "cub200_2011": "cub200", "cub-200-2011": "cub200",
    "cars196": "cars196", "cars": "cars196", "cars-196": "cars196",
    "online_products": "online_products", "sop": "online_products",
    "stanford_online_products": "online_products",
    "demo": "demo",
}  # fmt: skip
# (classes, train images, test images) of the complete data sets (algorithms.md §4).
FULL_COUNTS = {
    "cub200": (200, 5864, 5924),
    "cars196": (196, 8054, 8131),
    "online_products": (22634, 59551, 60502),
}
_SUBFOLDERS = {
    "cub200": ("cub200", "CUB_200_2011", "cub200/CUB_200_2011"),
    "cars196": ("cars196",),
    "online_products": (
        "online_products",
        "Stanford_Online_Products",
        "online_products/Stanford_Online_Products",
    ),
}


def canonical_dataset_name(name: str) -> str:
    """Map a data set name or alias (``cub``, ``cars``, ``sop``, ...) to its canonical name."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset '{name}': choose one of {', '.join(DATASETS)} (aliases: cub, cars, sop)"
        )
    return _ALIASES[key]


def load_records(dataset: str, root: str | Path | None) -> SplitRecords:
    """Find the data set under ``root`` (its folder or the parent of it) and return its zero-shot split."""
    dataset = canonical_dataset_name(dataset)
    if dataset == "demo":
        return load_demo_records(root)
    if root is None:
        raise FileNotFoundError(f"no data root given for '{dataset}'. {_HOW_TO_POINT}")
    root = Path(root).expanduser().resolve()  # absolute: Tune trials change the working directory
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"data root '{root}' {what}. {_HOW_TO_POINT}")
    for folder in (root, *(root / sub for sub in _SUBFOLDERS[dataset])):
        for layout in _LAYOUTS[dataset]:
            if folder.is_dir() and layout.matches(folder):
                train, test = layout.read(folder)
                _check_counts(dataset, folder, train, test)
                n_train = len({r.label for r in train})
                return SplitRecords(train, test, n_train, f"{dataset}/{layout.name}", str(folder))
    raise FileNotFoundError(_layout_message(dataset, root))


_HOW_TO_POINT = (
    "Point --source_path (python -m dcml_core.train) or --data-root (tune/run.py) at the data set folder "
    "or at its parent (e.g. the folder that contains 'cub200/')."
)


def _layout_message(dataset: str, root: Path) -> str:
    subs = ", ".join(f"'{s}/'" for s in _SUBFOLDERS[dataset])
    lines = [f"no {dataset} data set found in '{root}' (nor in its subfolders {subs}). Accepted layouts:"]
    lines += [f"  - {layout.name}: {layout.description}" for layout in _LAYOUTS[dataset]]
    for folder in (root, *(root / sub for sub in _SUBFOLDERS[dataset])):
        if folder.is_dir():
            lines.append(f"Found in '{folder}': {list_entries(folder)}")
    return "\n".join(lines)


def _check_counts(dataset: str, folder: Path, train: list[Record], test: list[Record]) -> None:
    n_classes = len({r.label for r in train} | {r.label for r in test})
    full_classes, full_train, full_test = FULL_COUNTS[dataset]
    if n_classes > full_classes:
        raise ValueError(
            f"{dataset} in '{folder}' has {n_classes} classes, more than the full data set ({full_classes})"
        )
    if n_classes == full_classes and (len(train), len(test)) != (full_train, full_test):
        hint = (
            "The total is right, so the classes are ordered differently from the reference split (for "
            "CARS196 use the Revisiting archive or the official cars_annos.mat)."
            if len(train) + len(test) == full_train + full_test
            else "The copy is incomplete or modified: extract the archive again."
        )
        raise ValueError(
            f"{dataset} in '{folder}' has all {full_classes} classes but the wrong number of images: "
            f"expected {full_train} train / {full_test} test, found {len(train)} / {len(test)}. {hint}"
        )


def _read_cub_folders(folder: Path) -> tuple[list[Record], list[Record]]:
    return split_first_half(read_numbered_folders(folder / "images"))


def _read_cub_official(folder: Path) -> tuple[list[Record], list[Record]]:
    names = {int(i): name for i, name in _table(folder / "classes.txt", 2)}
    paths = dict(_table(folder / "images.txt", 2))
    grouped: dict[int, list[str]] = {}
    for image_id, class_id in _table(folder / "image_class_labels.txt", 2, n_ids=2):
        if image_id not in paths or int(class_id) not in names:
            raise ValueError(
                f"{folder / 'image_class_labels.txt'}: image {image_id} or class {class_id} is unknown"
            )
        grouped.setdefault(int(class_id) - 1, []).append(paths[image_id])
    classes = {
        label: (names[label + 1], [str(folder / "images" / p) for p in sorted(rel)])
        for label, rel in grouped.items()
    }
    return split_first_half(classes)


def _read_cars_folders(folder: Path) -> tuple[list[Record], list[Record]]:
    names = sorted(p.name for p in class_folders(folder / "images"))  # Python sorted: case-sensitive (§4)
    classes = {i: (name, image_files(folder / "images" / name)) for i, name in enumerate(names)}
    return split_first_half(classes)


def _read_cars_official(folder: Path) -> tuple[list[Record], list[Record]]:
    """``cars_annos.mat``: split by class id (1-98 train), which may differ from the sorted folder names."""
    from scipy.io import loadmat

    path = folder / "cars_annos.mat"
    try:
        mat = loadmat(str(path), squeeze_me=True)
        annos = mat["annotations"].ravel()
        rel_paths = [str(a) for a in annos["relative_im_path"]]
        class_ids = [int(c) for c in annos["class"]]
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise ValueError(
            f"'{path}' is not a Stanford Cars annotation file (needs 'annotations' with the fields "
            f"relative_im_path and class): {err}"
        ) from err
    names = [str(n) for n in mat["class_names"].ravel()] if "class_names" in mat else []
    grouped: dict[int, list[str]] = {}
    for rel, class_id in zip(rel_paths, class_ids):
        grouped.setdefault(class_id - 1, []).append(rel)
    classes = {
        label: (_cars_name(names, label), [str(folder / p) for p in sorted(rel)])
        for label, rel in grouped.items()
    }
    return split_first_half(classes)


def _cars_name(names: list[str], label: int) -> str:
    return names[label] if label < len(names) else f"class_{label + 1:03d}"


def _read_ebay(path: Path, image_root: Path) -> list[Record]:
    records = [
        Record(str(image_root / rel), int(class_id) - 1, f"{int(class_id):05d}.{rel.split('/')[0]}")
        for _, class_id, _, rel in _table(path, 4, n_ids=3, header=True)
    ]
    return sorted(records, key=lambda r: r.label)  # stable: file order within a class


def _read_sop(info: Path, image_root: Path) -> tuple[list[Record], list[Record]]:
    train, test = (
        _read_ebay(info / "Ebay_train.txt", image_root),
        _read_ebay(info / "Ebay_test.txt", image_root),
    )
    shared = {r.label for r in train} & {r.label for r in test}
    if shared:
        raise ValueError(f"Ebay_train.txt and Ebay_test.txt in '{info}' share {len(shared)} class ids")
    return train, test


def _table(path: Path, n_fields: int, n_ids: int = 1, header: bool = False) -> list[tuple[str, ...]]:
    """Whitespace-separated rows of ``n_fields`` fields, the first ``n_ids`` of them integers."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip() or (header and i == 1 and not line.split()[0].isdigit()):
                continue
            fields = tuple(x.strip() for x in line.split(maxsplit=n_fields - 1))
            if len(fields) != n_fields or not all(x.isdigit() for x in fields[:n_ids]):
                raise ValueError(
                    f"{path}, line {i}: expected {n_fields} fields, the first {n_ids} of them integer ids, "
                    f"got {line.strip()!r}"
                )
            rows.append(fields)
    return rows


class _Layout(NamedTuple):
    name: str
    required: tuple[str, ...]  # entries that must exist in the data set folder
    read: Callable[[Path], tuple[list[Record], list[Record]]]
    description: str

    def matches(self, folder: Path) -> bool:
        return all((folder / name).exists() for name in self.required)


_LAYOUTS: dict[str, list[_Layout]] = {
    "cub200": [  # the official archive also has images/NNN.*/: its txt files take precedence
        _Layout("official", ("images", "images.txt", "image_class_labels.txt", "classes.txt"),
                _read_cub_official,
                "CUB_200_2011/ with images/, images.txt, image_class_labels.txt, classes.txt (official)"),
        _Layout("folders", ("images",), _read_cub_folders,
                "cub200/images/<NNN.class_name>/<image files> (Revisiting/DiVA README)"),
    ],
    "cars196": [
        _Layout("official", ("car_ims", "cars_annos.mat"), _read_cars_official,
                "car_ims/ + cars_annos.mat (official archive; split by class id 1-98 / 99-196)"),
        _Layout("folders", ("images",), _read_cars_folders,
                "cars196/images/<class name>/<image files> (Revisiting/DiVA README; sorted folder names)"),
    ],
    "online_products": [
        _Layout("folders", ("images", "Info_Files/Ebay_train.txt", "Info_Files/Ebay_test.txt"),
                lambda f: _read_sop(f / "Info_Files", f / "images"),
                "online_products/images/<category>_final/... + Info_Files/Ebay_{train,test}.txt (README)"),
        _Layout("official", ("Ebay_train.txt", "Ebay_test.txt"), lambda f: _read_sop(f, f),
                "Stanford_Online_Products/ with Ebay_{train,test}.txt and <category>_final/ (official)"),
    ],
}  # fmt: skip
