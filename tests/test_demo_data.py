"""The embedded glyph demo data set: content, split, look-alikes, caching, concurrency, untrained baseline."""

from __future__ import annotations

import json
import multiprocessing
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw, ImageFont

from dcml_core.data import (
    ImageDataset,
    build_transforms,
    default_demo_root,
    demo,
    ensure_demo_dataset,
    load_records,
)

N_PER_CLASS = 12  # the default (40) takes ~8 s to build; the tests only need the structure


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_dataset(tmp_path_factory.mktemp("data") / demo.DEMO_DIRNAME, n_per_class=N_PER_CLASS)


@pytest.fixture(scope="session")
def manifest(demo_root: Path) -> dict:
    return json.loads((demo_root / "manifest.json").read_text(encoding="utf-8"))


def test_manifest_and_image_files(demo_root: Path, manifest: dict) -> None:
    assert manifest["version"] == demo.DEMO_VERSION and manifest["n_per_class"] == N_PER_CLASS
    assert manifest["n_classes"] == len(manifest["classes"]) >= 100
    assert manifest["n_images"] == N_PER_CLASS * manifest["n_classes"]
    folders = sorted(p.name for p in (demo_root / "images").iterdir())
    assert folders == sorted(c["folder"] for c in manifest["classes"])
    for c in manifest["classes"][:: max(1, len(manifest["classes"]) // 10)]:
        files = sorted((demo_root / "images" / c["folder"]).iterdir())
        assert len(files) == N_PER_CLASS and all(f.suffix == ".png" for f in files)
        with Image.open(files[0]) as img:
            assert img.size == (64, 64) and img.mode == "RGB"


def test_split_is_class_disjoint_and_covers_every_alphabet(demo_root: Path, manifest: dict) -> None:
    rec = load_records("demo", demo_root)
    assert rec.layout == "demo/folders" and rec.root == str(demo_root)
    train_names, test_names = {r.class_name for r in rec.train}, {r.class_name for r in rec.test}
    assert train_names.isdisjoint(test_names)
    assert (
        rec.n_train_classes == len(train_names) == manifest["n_classes"] // 2 == manifest["n_train_classes"]
    )
    assert train_names == {c["folder"] for c in manifest["classes"] if c["split"] == "train"}
    assert len(rec.train) == N_PER_CLASS * len(train_names) and len(rec.test) == N_PER_CLASS * len(test_names)
    for script in demo.SCRIPTS:
        n = {
            s: sum(c["script"] == script and c["split"] == s for c in manifest["classes"])
            for s in ("train", "test")
        }
        assert n["train"] >= 5 and abs(n["train"] - n["test"]) <= 1, (script, n)
    # the same split comes from the parent folder, and a complete smaller set is used as it is (no rebuild)
    assert load_records("demo", demo_root.parent) == rec


def test_lookalikes_are_left_out(manifest: dict) -> None:
    chars = [c["char"] for c in manifest["classes"]]
    assert len(set(chars)) == len(chars)
    for dropped in "АΑаoοо0cсxхχlιpρрvνwzsуУdИЯε":  # look-alikes, case pairs and mirror images
        assert dropped not in chars, unicodedata.name(dropped)
    assert all(kept in chars for kept in "AOIPXVWZSyΓΠΦЖ")  # one of each group stays
    for group in demo.LOOKALIKE_GROUPS:
        assert sum(ch in chars for ch in group) <= 1, group


def _canonical(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    """Glyph mask cropped to its box, padded square and resized: invariant to size and position."""
    img = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(img).text((80, 80), ch, font=font, fill=255, anchor="mm")
    glyph = img.crop(img.getbbox())
    side = max(glyph.size)
    square = Image.new("L", (side, side), 0)
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return np.asarray(square.resize((24, 24), Image.BILINEAR)).ravel() > 100  # (576,)


def _mean_iou(chars: list[str], mirror: bool) -> np.ndarray:
    """(C, C) IoU of the canonical masks (column glyphs mirrored if asked), averaged over 4 fonts."""
    names = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "STIXGeneral")
    fonts = [f for f in demo.font_files() if f.stem in names]
    iou = np.zeros((len(chars), len(chars)))
    for path in fonts:
        font = ImageFont.truetype(str(path), 64)
        masks = np.stack([_canonical(font, ch) for ch in chars]).reshape(len(chars), 24, 24)  # (C, 24, 24)
        other = masks[:, :, ::-1] if mirror else masks
        a = masks.reshape(len(chars), -1).astype(np.float64)  # (C, 576)
        b = other.reshape(len(chars), -1).astype(np.float64)  # (C, 576)
        inter = a @ b.T
        iou += inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter) / len(fonts)
    return iou


def test_no_two_classes_render_alike_even_when_flipped(manifest: dict) -> None:
    chars = [c["char"] for c in manifest["classes"]]
    controls = ["А", "d"]  # left out: Cyrillic A looks like A, d is a mirrored b
    plain, mirrored = _mean_iou(chars + controls, False), _mean_iou(chars + controls, True)
    assert plain[chars.index("A"), -2] > 0.95 and mirrored[chars.index("b"), -1] > 0.8  # the measures work
    n = len(chars)
    same = plain[:n, :n] - 2 * np.eye(n)
    i, j = np.unravel_index(same.argmax(), same.shape)
    assert same.max() < 0.93, (chars[i], chars[j], same.max())
    # a pair that becomes much more alike when one glyph is flipped is a mirror pair: none may be left
    mirror_only = np.where(mirrored[:n, :n] - plain[:n, :n] > 0.1, mirrored[:n, :n], 0.0)
    np.fill_diagonal(mirror_only, 0)
    i, j = np.unravel_index(mirror_only.argmax(), mirror_only.shape)
    assert mirror_only.max() < 0.8, (chars[i], chars[j], mirror_only.max())  # max: flipped C vs Э (bar)
    assert mirrored[chars.index("b"), -1] - plain[chars.index("b"), -1] > 0.1  # b/d would be caught


def test_missing_glyphs_are_detected() -> None:
    ttf = {f.stem: f for f in demo.font_files()}
    assert demo.font_has_glyph(ttf["DejaVuSans"], "Γ") and demo.font_has_glyph(ttf["cmr10"], "A")
    assert not demo.font_has_glyph(ttf["cmr10"], "Γ")  # .notdef box in the TeX font
    assert not demo.font_has_glyph(ttf["STIXGeneral"], "\ue001")  # blank .notdef
    assert not demo.font_has_glyph(ttf["DejaVuSansDisplay"], "A")
    assert all(f.stem not in ("cmsy10", "cmex10", "LastResortHE-Regular") for f in demo.font_files())


def test_every_image_shows_a_glyph_and_classes_vary(demo_root: Path, manifest: dict) -> None:
    for c in manifest["classes"]:
        images = [
            np.asarray(Image.open(p).convert("L"), np.float64)
            for p in (demo_root / "images" / c["folder"]).iterdir()
        ]
        for img in images:
            assert (img < np.median(img) - 45).sum() >= 10, c["folder"]  # dark glyph on a light background
        assert len({img.tobytes() for img in images}) == len(images)
        assert len(c["fonts"]) >= 4 and (
            c["script"] == "latin" or all(not f.startswith("cm") for f in c["fonts"])
        )


def test_reused_rebuilt_when_incomplete_and_refuses_foreign_folders(
    tmp_path: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(demo, "_build", lambda *a: pytest.fail("a complete data set must not be rebuilt"))
        assert ensure_demo_dataset(demo_root, n_per_class=N_PER_CLASS) == demo_root
    small = ensure_demo_dataset(tmp_path / "demo_small", n_per_class=2)
    victim = next((small / "images").iterdir()) / "0001.png"
    victim.unlink()
    assert ensure_demo_dataset(small, n_per_class=2) == small and victim.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["demo_small"]  # no temporary folders left behind
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="holds no demo data set.*refusing to overwrite"):
        ensure_demo_dataset(foreign)


def _build_in(root: str) -> str:
    return str(ensure_demo_dataset(root, n_per_class=2))


def test_two_processes_building_at_once(tmp_path: Path) -> None:
    root = tmp_path / demo.DEMO_DIRNAME
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_build_in, [str(root)] * 2) == [str(root)] * 2
    assert demo._is_complete(root, n_per_class=2)
    assert [p.name for p in tmp_path.iterdir()] == [demo.DEMO_DIRNAME]


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DCML_DATA_HOME", str(tmp_path / "data"))
    assert default_demo_root() == tmp_path / "data" / f"demo_v{demo.DEMO_VERSION}"
    monkeypatch.delenv("DCML_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_demo_root() == tmp_path / ".cache" / "dcml_tune" / f"demo_v{demo.DEMO_VERSION}"


def _recall_at_1(features: np.ndarray, labels: np.ndarray) -> float:
    dist = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)  # (N, N) brute force
    np.fill_diagonal(dist, np.inf)
    return float((labels[dist.argmin(1)] == labels).mean())


def test_untrained_resnet18_is_far_from_solving_the_test_classes(demo_root: Path) -> None:
    rec = load_records("demo", demo_root)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()  # features from avgpool
    model.eval()
    subset = [r for r in rec.test if int(Path(r.path).stem) < 5]  # 5 images per test class keep it fast
    data = ImageDataset(subset, build_transforms("eval", crop_size=64, resize_size=64))
    feats, labels = [], []
    with torch.no_grad():
        for x, y, _ in torch.utils.data.DataLoader(data, batch_size=64):
            feats.append(model(x))  # (B, 512)
            labels.append(y)
    recall = _recall_at_1(torch.cat(feats).double().numpy(), torch.cat(labels).numpy())
    print(f"untrained ResNet-18 recall@1 on {len(data)} demo test images: {recall:.3f}")
    assert recall < 0.9, recall
