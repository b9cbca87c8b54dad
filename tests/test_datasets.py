"""Layouts of CUB200/CARS196/SOP on tiny generated fixtures, bad-input messages, validation split, dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dcml_core.data import (
    ImageDataset,
    Record,
    build_transforms,
    canonical_dataset_name,
    check_samples_per_class,
    class_disjoint_val_split,
    layouts,
    load_records,
    verify_images,
)

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross",
               "004.Groove_billed_Ani", "005.Crested_Auklet", "006.Least_Auklet"]  # fmt: skip


def _image(path: Path, seed: int = 0, mode: str = "RGB", fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def _cub_folders(root: Path, classes: list[str] = CUB_CLASSES, n: int = 3) -> Path:
    for c, name in enumerate(classes):
        for j in range(n):
            _image(root / "images" / name / f"{name.split('.')[-1]}_{j:04d}.jpg", seed=10 * c + j, fmt="JPEG")
    return root


def _rel(records: list[Record], base: Path) -> list[tuple[str, int, str]]:
    return [(str(Path(r.path).relative_to(base)), r.label, r.class_name) for r in records]


# ------------------------------------------------------------ names
def test_canonical_names_and_aliases() -> None:
    assert canonical_dataset_name("CUB") == "cub200"
    assert canonical_dataset_name("cars") == "cars196"
    assert canonical_dataset_name(" sop ") == "online_products"
    assert canonical_dataset_name("demo") == "demo"
    with pytest.raises(
        ValueError, match="unknown dataset 'imagenet'.*cub200, cars196, online_products, demo"
    ):
        canonical_dataset_name("imagenet")


# ------------------------------------------------------------ CUB
def test_cub_folder_layout_from_parent_and_from_dataset_folder(tmp_path: Path) -> None:
    ds = _cub_folders(tmp_path / "cub200")
    (ds / "images" / CUB_CLASSES[0] / "._hidden.jpg").write_bytes(b"appledouble")
    (ds / "images" / CUB_CLASSES[0] / "notes.txt").write_text("not an image")
    for root in (tmp_path, ds):
        rec = load_records("cub", root)
        assert rec.layout == "cub200/folders" and rec.root == str(ds)
        assert rec.n_train_classes == 3
        assert [r.label for r in rec.train] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert [r.label for r in rec.test] == [3, 3, 3, 4, 4, 4, 5, 5, 5]
        assert rec.train[0].class_name == "001.Black_footed_Albatross"
        assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in rec.train + rec.test)
        assert Path(rec.train[0].path).name == "Black_footed_Albatross_0000.jpg"


def test_cub_folders_sorted_by_numeric_prefix_not_by_string(tmp_path: Path) -> None:
    _cub_folders(tmp_path, ["10.ten", "2.two", "1.one", "11.eleven"], n=1)
    rec = load_records("cub200", tmp_path)
    assert [r.class_name for r in rec.train] == ["1.one", "2.two"]  # string sort would give 1, 10
    assert [r.label for r in rec.train + rec.test] == [0, 1, 9, 10]  # label = prefix - 1


def _cub_official(base: Path, skip: str | None = None) -> Path:
    folder = _cub_folders(base / "CUB_200_2011")
    images = sorted(p.relative_to(folder / "images").as_posix() for p in (folder / "images").rglob("*.jpg"))
    images = [p for p in images if p != skip]
    (folder / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CUB_CLASSES)))
    (folder / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(images)))
    labels = "".join(f"{i + 1} {int(p.split('.')[0])}\n" for i, p in enumerate(images))
    (folder / "image_class_labels.txt").write_text(labels)
    return folder


def test_cub_official_archive_uses_txt_files_and_matches_folder_layout(tmp_path: Path) -> None:
    official = _cub_official(tmp_path / "a")
    rec = load_records("cub200", tmp_path / "a")
    assert rec.layout == "cub200/official" and rec.root == str(official)
    folders = load_records("cub200", _cub_folders(tmp_path / "b" / "cub200"))
    assert _rel(rec.train, official) == _rel(folders.train, tmp_path / "b" / "cub200")
    assert _rel(rec.test, official) == _rel(folders.test, tmp_path / "b" / "cub200")
    # the txt files decide: an image present on disk but not listed in images.txt is not used
    skipped = "004.Groove_billed_Ani/Groove_billed_Ani_0001.jpg"
    rec = load_records("cub200", _cub_official(tmp_path / "c", skip=skipped).parent)
    assert len(rec.test) == 8 and all(not r.path.endswith(skipped) for r in rec.test)


def test_cub_bad_class_folder_and_empty_class(tmp_path: Path) -> None:
    _cub_folders(tmp_path, ["001.a", "002.b"], n=1)
    (tmp_path / "images" / "birds").mkdir()
    with pytest.raises(ValueError, match=r"class folder '.*birds' has no numeric prefix.*001\.Black"):
        load_records("cub200", tmp_path)
    (tmp_path / "images" / "birds").rmdir()
    (tmp_path / "images" / "003.c").mkdir()
    with pytest.raises(ValueError, match=r"class folder '.*003\.c' contains no image files"):
        load_records("cub200", tmp_path)


# ------------------------------------------------------------ CARS
CAR_NAMES = [
    "acura TL 2012",
    "BMW M3 2012",
    "AM General Hummer 2000",
    "Audi A4 2010",
    "Zoe 2013",
    "Buick 2012",
]


def test_cars_folder_layout_sorts_names_case_sensitively(tmp_path: Path) -> None:
    for c, name in enumerate(CAR_NAMES):
        for j in range(2):
            _image(tmp_path / "cars196" / "images" / name / f"{c:02d}{j:03d}.jpg", seed=c, fmt="JPEG")
    rec = load_records("cars196", tmp_path)
    assert rec.layout == "cars196/folders"
    expected = sorted(CAR_NAMES)  # ['AM General...', 'Audi...', 'BMW...', 'Buick...', 'Zoe...', 'acura...']
    assert [r.class_name for r in rec.train[::2]] == expected[:3]
    assert [r.class_name for r in rec.test[::2]] == expected[3:]
    assert [r.label for r in rec.test] == [3, 3, 4, 4, 5, 5]


def _cars_official(folder: Path, annotations: bool = True) -> Path:
    rows = []
    for i in range(12):
        class_id = i % 6 + 1
        _image(folder / "car_ims" / f"{i + 1:06d}.jpg", seed=i, fmt="JPEG")
        rows.append((f"car_ims/{i + 1:06d}.jpg", 1, 2, 30, 40, class_id, i % 2))
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    dtype = [(f, "O") for f in fields]
    annos = np.array([rows], dtype=dtype)  # (1, 12) struct array, as in the real file
    names = np.array([CAR_NAMES], dtype=object)  # (1, 6) cell array
    content = {"annotations": annos, "class_names": names} if annotations else {"something": np.zeros(3)}
    scipy.io.savemat(str(folder / "cars_annos.mat"), content)
    return folder


def test_cars_official_archive_splits_by_class_id(tmp_path: Path) -> None:
    folder = _cars_official(tmp_path / "cars196")
    rec = load_records("cars", tmp_path)
    assert rec.layout == "cars196/official" and rec.root == str(folder)
    # class ids 1-3 train, 4-6 test, whatever the names' sort order; the 'test' flag is not the split
    assert [r.label for r in rec.train] == [0, 0, 1, 1, 2, 2]
    assert [r.class_name for r in rec.train[::2]] == CAR_NAMES[:3]
    assert [r.class_name for r in rec.test[::2]] == CAR_NAMES[3:]
    assert [Path(r.path).name for r in rec.train[:2]] == ["000001.jpg", "000007.jpg"]
    assert all(Path(r.path).is_file() for r in rec.train + rec.test)


def test_cars_mat_without_annotations_is_reported(tmp_path: Path) -> None:
    _cars_official(tmp_path, annotations=False)
    with pytest.raises(ValueError, match=r"cars_annos\.mat' is not a Stanford Cars annotation file"):
        load_records("cars196", tmp_path)


# ------------------------------------------------------------ SOP
def _ebay(path: Path, rows: list[tuple[int, int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["image_id class_id super_class_id path"]
    lines += [f"{i + 1} {cid} {sid} {p}" for i, (cid, sid, p) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


SOP_TRAIN = [
    (2, 1, "bicycle_final/222_1.JPG"),
    (1, 1, "bicycle_final/111_0.JPG"),
    (2, 1, "bicycle_final/222_0.JPG"),
    (1, 1, "bicycle_final/111_1.JPG"),
]
SOP_TEST = [(3, 2, "chair_final/333_0.JPG"), (3, 2, "chair_final/333_1.JPG"), (4, 2, "chair_final/444_0.JPG")]


def _sop_images(base: Path) -> None:
    for k, (_, _, rel) in enumerate(SOP_TRAIN + SOP_TEST):
        _image(base / rel, seed=k, fmt="JPEG")


@pytest.mark.parametrize("layout", ["folders", "official"])
def test_sop_layouts(tmp_path: Path, layout: str) -> None:
    if layout == "folders":
        folder = tmp_path / "online_products"
        _sop_images(folder / "images")
        _ebay(folder / "Info_Files" / "Ebay_train.txt", SOP_TRAIN)
        _ebay(folder / "Info_Files" / "Ebay_test.txt", SOP_TEST)
        image_root = folder / "images"
    else:
        folder = tmp_path / "Stanford_Online_Products"
        _sop_images(folder)
        _ebay(folder / "Ebay_train.txt", SOP_TRAIN)
        _ebay(folder / "Ebay_test.txt", SOP_TEST)
        image_root = folder
    rec = load_records("sop", tmp_path)
    assert rec.layout == f"online_products/{layout}" and rec.n_train_classes == 2
    assert [(r.label, str(Path(r.path).relative_to(image_root))) for r in rec.train] == [
        (0, "bicycle_final/111_0.JPG"), (0, "bicycle_final/111_1.JPG"),
        (1, "bicycle_final/222_1.JPG"), (1, "bicycle_final/222_0.JPG"),
    ]  # fmt: skip
    assert [r.label for r in rec.test] == [2, 2, 3]
    assert rec.test[0].class_name == "00003.chair_final"
    assert all(Path(r.path).is_file() for r in rec.train + rec.test)


def test_sop_overlapping_classes_and_bad_lines(tmp_path: Path) -> None:
    _ebay(tmp_path / "Ebay_train.txt", SOP_TRAIN)
    _ebay(tmp_path / "Ebay_test.txt", SOP_TRAIN[:1])
    with pytest.raises(ValueError, match="share 1 class ids"):
        load_records("online_products", tmp_path)
    (tmp_path / "Ebay_test.txt").write_text(
        "image_id class_id super_class_id path\n1 3 chair_final/333_0.JPG\n"
    )
    with pytest.raises(ValueError, match=r"Ebay_test\.txt, line 2: expected 4 fields"):
        load_records("online_products", tmp_path)


# ------------------------------------------------------------ full-size checks
def test_full_class_count_requires_the_published_image_counts(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for c in range(200):
        (images / f"{c + 1:03d}.bird").mkdir(parents=True)
        (images / f"{c + 1:03d}.bird" / "a.jpg").touch()  # the layout reader does not open images
    with pytest.raises(ValueError, match="all 200 classes.*expected 5864 train / 5924 test, found 100 / 100"):
        load_records("cub200", tmp_path)
    train = [(c, 1, f"x_final/{c}.JPG") for c in range(1, 11319)]
    test = [(c, 1, f"x_final/{c}.JPG") for c in range(11319, 22635)]
    _ebay(tmp_path / "sop" / "Ebay_train.txt", train)
    _ebay(tmp_path / "sop" / "Ebay_test.txt", test)
    with pytest.raises(ValueError, match="expected 59551 train / 60502 test, found 11318 / 11316"):
        load_records("sop", tmp_path / "sop")


def test_count_check_passes_when_counts_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cub_folders(tmp_path)
    monkeypatch.setitem(layouts.FULL_COUNTS, "cub200", (6, 9, 9))
    assert len(load_records("cub200", tmp_path).train) == 9
    monkeypatch.setitem(layouts.FULL_COUNTS, "cub200", (6, 10, 9))
    with pytest.raises(ValueError, match="expected 10 train / 9 test, found 9 / 9. The copy is incomplete"):
        load_records("cub200", tmp_path)
    monkeypatch.setitem(layouts.FULL_COUNTS, "cub200", (6, 10, 8))
    with pytest.raises(ValueError, match="found 9 / 9. The total is right, so the classes are ordered"):
        load_records("cub200", tmp_path)


# ------------------------------------------------------------ root / layout errors
def test_missing_root_says_which_path_and_how_to_point_at_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"'{missing}' does not exist.*--source_path.*--data-root"):
        load_records("cub200", missing)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_records("cars196", tmp_path / "file")


def test_wrong_layout_lists_expected_layouts_and_found_entries(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"entry{i:02d}.txt").write_text("x")
    (tmp_path / "photos").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_records("cub200", tmp_path)
    msg = str(err.value)
    assert f"no cub200 data set found in '{tmp_path}'" in msg
    assert "images.txt, image_class_labels.txt, classes.txt" in msg and "images/<NNN.class_name>" in msg
    assert f"Found in '{tmp_path}': entry00.txt, entry01.txt" in msg and "... (6 more)" in msg


def test_partial_sop_layout_is_a_layout_error(tmp_path: Path) -> None:
    _sop_images(tmp_path / "online_products" / "images")  # Info_Files missing
    with pytest.raises(FileNotFoundError) as err:
        load_records("sop", tmp_path)
    msg = str(err.value)
    assert "Info_Files/Ebay_{train,test}.txt" in msg and "Ebay_{train,test}.txt" in msg
    assert f"Found in '{tmp_path / 'online_products'}': images/" in msg


def test_check_samples_per_class_names_small_classes() -> None:
    records = [Record(f"/x/{i}.jpg", lb, f"class_{lb}") for i, lb in enumerate([0, 0, 1, 2, 2, 2])]
    check_samples_per_class(records, 1)
    with pytest.raises(ValueError) as err:
        check_samples_per_class(records, 3)
    assert "2 training class(es) have fewer images than samples_per_class=3: " in str(err.value)
    assert "'class_1' (label 1): 1, 'class_0' (label 0): 2." in str(err.value)


# ------------------------------------------------------------ verify_images
def test_verify_images_names_bad_files_or_skips_them(tmp_path: Path) -> None:
    good = [Record(str(_image(tmp_path / f"ok{i}.png", seed=i)), i % 2, f"c{i % 2}") for i in range(4)]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_image(tmp_path / "full.png").read_bytes()[:60])
    bad = [
        Record(str(corrupt), 0, "c0"),
        Record(str(truncated), 1, "c1"),
        Record(str(tmp_path / "gone.png"), 1, "c1"),
    ]
    records = good[:2] + bad + good[2:]
    assert verify_images(good) == (good, [])
    with pytest.raises(
        ValueError,
        match=r"(?s)3 of 7 images cannot be read:\n.*corrupt\.jpg: .*gone\.png: FileNotFoundError.*skip_bad",
    ):
        verify_images(records)
    with pytest.warns(UserWarning, match="skipping 3 of 7 unreadable images"):
        kept, bad_paths = verify_images(records, skip_bad=True)
    assert kept == good and sorted(bad_paths) == sorted(r.path for r in bad)


# ------------------------------------------------------------ dataset
def test_image_dataset_items_views_rgb_and_pickling(tmp_path: Path) -> None:
    modes = ["RGB", "L", "RGBA", "P"]
    records = [Record(str(_image(tmp_path / f"{m}.png", seed=i, mode=m)), i, m) for i, m in enumerate(modes)]
    tf = build_transforms("train", crop_size=8, resize_size=8)
    ds = ImageDataset(records, tf)
    for i in range(len(ds)):
        x, label, index = ds[i]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and (label, index) == (i, i)
    two = ImageDataset(records, tf, second_view_transform=tf)
    torch.manual_seed(0)
    x_a, _, _, x_b = two[0]
    assert x_a.shape == x_b.shape == (3, 8, 8) and not torch.equal(x_a, x_b)  # independent draws
    clone = pickle.loads(pickle.dumps(two))
    torch.manual_seed(1)
    first = clone[2]
    torch.manual_seed(1)
    second = two[2]
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(first, second))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    images, labels, indices = next(iter(loader))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 1] and indices.tolist() == [0, 1]


def test_image_dataset_bad_file_raises_or_is_replaced_by_same_class(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    records = [Record(str(bad), 0, "c0"), Record(str(_image(tmp_path / "ok.png")), 0, "c0")]
    tf = build_transforms("eval", crop_size=8, resize_size=8)
    with pytest.raises(OSError, match=r"cannot read image '.*bad\.png' \(class 'c0'\)"):
        ImageDataset(records, tf)[0]
    ds = ImageDataset(records, tf, skip_bad=True)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        x, label, index = ds[0]
    assert torch.equal(x, ds[1][0]) and (label, index) == (0, 0)
    with pytest.raises(ValueError, match="no records"):
        ImageDataset([], tf)


# ------------------------------------------------------------ validation split
def _records(sizes: list[int], offset: int = 0) -> list[Record]:
    return [
        Record(f"/d/{c}/{j}.jpg", c + offset, f"cls{c + offset}")
        for c, n in enumerate(sizes)
        for j in range(n)
    ]


def test_val_split_is_class_disjoint_relabelled_and_deterministic() -> None:
    records = _records([3, 4, 2, 5, 3, 3, 4, 2, 3, 3], offset=100)
    train, val, val_classes = class_disjoint_val_split(records, 0.2, seed=7)
    assert len(val_classes) == 2 and val_classes == sorted(val_classes, key=lambda n: int(n[3:]))
    assert {r.class_name for r in val} == set(val_classes)
    assert {r.class_name for r in train}.isdisjoint(val_classes)
    assert sorted({r.label for r in train}) == list(range(8))  # contiguous 0..C-1
    assert {r.label for r in val} == {int(n[3:]) for n in val_classes}  # val labels unchanged
    assert len(train) + len(val) == len(records)
    assert [r.class_name for r in train] == [r.class_name for r in records if r.class_name not in val_classes]
    assert class_disjoint_val_split(records, 0.2, seed=7) == (train, val, val_classes)
    # the chosen classes follow from raw PCG64 output: doubles = (uint64 >> 11) * 2**-53, smallest two keys
    raw = np.random.PCG64(7).random_raw(10)
    keys = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
    assert val_classes == [f"cls{100 + i}" for i in sorted(np.argsort(keys)[:2])]
    assert len({tuple(class_disjoint_val_split(records, 0.2, seed=s)[2]) for s in range(6)}) > 1


def test_val_split_sizes_and_errors() -> None:
    records = _records([2] * 10)
    assert len(class_disjoint_val_split(records, 0.0)[1]) == 0
    assert class_disjoint_val_split(records, 0.0)[0] == records  # already contiguous: unchanged
    assert len(class_disjoint_val_split(records, 0.01)[2]) == 1  # at least one class
    assert len(class_disjoint_val_split(records, 0.25)[2]) == 3  # 2.5 rounds half up
    assert len(class_disjoint_val_split(records, 0.8)[2]) == 8
    with pytest.raises(ValueError, match="leaves 1 class"):
        class_disjoint_val_split(records, 0.9)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        class_disjoint_val_split(records, 1.0)
