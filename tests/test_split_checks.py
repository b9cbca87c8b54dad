"""Small data sets are refused before any training when a split cannot give honest numbers (issue: small data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcml_core.config import ExperimentConfig
from dcml_core.data import Record
from dcml_core.data.split_checks import SplitSizeError, check_split_sizes, split_size_problems
from dcml_core.engine import Engine


def _records(sizes: list[int], offset: int = 0) -> list[Record]:
    return [Record(f"c{c}/{j}.png", c, f"c{c}") for c, n in enumerate(sizes, start=offset) for j in range(n)]


def _check(train, val, test, **kw) -> list[str]:
    args = {"val_fraction": 0.2, "batch_size": 8, "samples_per_class": 2, "recall_ks": (1, 2, 4, 8), **kw}
    return split_size_problems(train=train, val=val, test=test, **args)


def test_splits_that_fit_pass() -> None:
    assert _check(_records([5] * 4), _records([5] * 2, 4), _records([5] * 3, 6)) == []
    check_split_sizes(train=_records([5] * 4), val=_records([5] * 2, 4), test=_records([5] * 3, 6),
                      val_fraction=0.2, batch_size=8, samples_per_class=2, recall_ks=(1, 2, 4, 8))  # fmt: skip


def test_one_validation_class_names_the_split_and_the_fix() -> None:
    (problem,) = _check(_records([5] * 4), _records([9], 4), _records([5] * 3, 6))
    assert "the validation split has 1 class(es) (9 images)" in problem
    assert "Recall@1 is 1.0" in problem and "raise data.val_fraction (now 0.2" in problem
    assert "set it to 0" in problem


def test_no_validation_split_is_not_checked() -> None:
    assert _check(_records([5] * 4), [], _records([5] * 3, 6), val_fraction=0.0) == []


def test_one_test_class() -> None:
    (problem,) = _check(_records([5] * 4), _records([5] * 2, 4), _records([12], 6))
    assert problem.startswith("the test split has 1 class(es) (12 images)")


def test_recall_k_above_a_split_size_suggests_the_ks_that_fit() -> None:
    # SOP's R@100 on a subset whose test split holds 57 images
    problems = _check(_records([5] * 40), _records([3] * 30, 40), _records([3] * 19, 70), recall_ks=(1, 10, 100))
    assert len(problems) == 2
    assert "Recall@100 but the validation split has 90 images" in problems[0]
    assert "Recall@100 but the test split has 57 images" in problems[1]
    assert "at most 56 neighbours" in problems[1] and "(e.g. 1 10)" in problems[1]


def test_batch_needing_more_classes_than_the_training_split() -> None:
    (problem,) = _check(_records([5] * 4), _records([5] * 2, 4), _records([5] * 3, 6), batch_size=16)
    assert "draws 8 classes (data.batch_size 16 / data.samples_per_class 2)" in problem
    assert "only 4 classes" in problem and "at most 8" in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SplitSizeError) as info:
        check_split_sizes(train=_records([5] * 4), val=_records([9], 4), test=_records([2], 6), val_fraction=0.2,
                          batch_size=16, samples_per_class=2, recall_ks=(1, 2))  # fmt: skip
    text = str(info.value)
    assert text.count("; ") >= 2 and "training batch" in text and "validation split" in text and "test split" in text


def _cub_tree(root: Path, n_classes: int, n_images: int) -> Path:
    rng = np.random.default_rng(0)
    for c in range(n_classes):
        folder = root / "cub200" / "images" / f"{c + 1:03d}.Class_{c + 1}"
        folder.mkdir(parents=True)
        for j in range(n_images):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{j}.jpg")
    return root


def _sop_tree(root: Path, n_train: int, n_test: int, per_class: int) -> Path:
    folder = root / "online_products"
    rng = np.random.default_rng(0)
    for split, first, n in (("train", 1, n_train), ("test", n_train + 1, n_test)):
        rows = ["image_id class_id super_class_id path"]
        for c in range(first, first + n):
            for j in range(per_class):
                rel = f"bicycle_final/{c}_{j}.JPG"
                (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    folder / "images" / rel, format="JPEG"
                )
                rows.append(f"{len(rows)} {c} 1 {rel}")
        (folder / "Info_Files").mkdir(parents=True, exist_ok=True)
        (folder / "Info_Files" / f"Ebay_{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def _config(dataset: str, root: Path, **data) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "data": {"dataset": dataset, "root": str(root), "batch_size": 4, "num_workers": 0, "crop_size": 8,
                 "resize_size": 8, **data},
        "model": {"arch": "demo_cnn_normalize", "pretrained": "none", "embed_dim": 8},
    })  # fmt: skip


def test_cub_subset_with_one_validation_class_fails_before_any_model(tmp_path: Path, monkeypatch) -> None:
    root = _cub_tree(tmp_path, n_classes=8, n_images=3)  # 4 training classes: 20 % holds out one
    built = []
    monkeypatch.setattr("dcml_core.engine.build_model", lambda **kw: built.append(kw))
    with pytest.raises(SplitSizeError, match="the validation split has 1 class"):
        Engine(_config("cub200", root), device="cpu")
    assert built == []  # refused before the network was built


def test_sop_subset_with_recall_at_100_fails_before_any_model(tmp_path: Path, monkeypatch) -> None:
    root = _sop_tree(tmp_path, n_train=10, n_test=10, per_class=3)
    built = []
    monkeypatch.setattr("dcml_core.engine.build_model", lambda **kw: built.append(kw))
    with pytest.raises(SplitSizeError, match=r"Recall@100 but the test split has 30 images"):
        Engine(_config("online_products", root, val_fraction=0.0), device="cpu")
    assert built == []
