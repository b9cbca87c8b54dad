"""Decoded-image cache (build, freshness, concurrency, eval crops) and the cached pipeline behind Loaders."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dcml_core.config import ConfigError, ExperimentConfig
from dcml_core.data.cache import open_cache, stored_size
from dcml_core.data_bundle import Loaders, prepare_data
from dcml_core.engine import Engine
from tests.conftest import tiny_config

CACHE_SIZE = 40
# (file name, (H, W), mode): the last two exceed CACHE_SIZE on their shorter side and are stored reduced.
FIXTURES = [("a/0.jpg", (30, 41), "RGB"), ("a/1.png", (33, 25), "L"), ("b/2.bmp", (20, 20), "RGB"),
            ("b/3.jpg", (90, 60), "RGB"), ("b/4.png", (48, 100), "RGBA")]  # fmt: skip


def _write(path: Path, hw: tuple[int, int], mode: str, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*hw, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").convert(mode).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [_write(tmp_path / "data" / name, hw, mode, i) for i, (name, hw, mode) in enumerate(FIXTURES)]


def _decoded(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_build_stores_decoded_pixels_and_reopens_without_rebuild(images, tmp_path) -> None:
    cache = open_cache(images, CACHE_SIZE, home=tmp_path / "cache", name="fixture")
    assert cache.built and len(cache) == len(images)
    for path in images:
        row = int(cache.rows([path])[0])
        pixels = _decoded(path)
        h, w = stored_size(*pixels.shape[:2], CACHE_SIZE)
        expected = (
            pixels
            if (h, w) == pixels.shape[:2]
            else np.asarray(Image.fromarray(pixels).resize((w, h), Image.BILINEAR))
        )
        assert np.array_equal(cache.image(row), expected), path
        assert tuple(cache.original_hw[row]) == pixels.shape[:2]
    assert min(cache.stored_hw[cache.rows([images[3]])[0]]) == CACHE_SIZE  # 90x60 -> 60x40
    again = open_cache(images, CACHE_SIZE, home=tmp_path / "cache", name="fixture")
    assert not again.built and again.folder == cache.folder
    other_size = open_cache(images, 64, home=tmp_path / "cache", name="fixture")
    assert other_size.built and other_size.folder != cache.folder


def test_stored_size_follows_torchvision_resize() -> None:
    assert stored_size(375, 500, 256) == (256, 341) and stored_size(500, 333, 256) == (384, 256)
    assert stored_size(100, 80, 256) == (100, 80)


def test_touched_file_is_rehashed_and_the_cache_reused(images, tmp_path) -> None:
    home = tmp_path / "cache"
    first = open_cache(images, CACHE_SIZE, home=home)
    st = os.stat(images[0])
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # new mtime, same bytes
    second = open_cache(images, CACHE_SIZE, home=home)
    assert not second.built and second.folder == first.folder
    assert len(list((home / "aliases").glob("*.json"))) == 2  # one per stat manifest


def test_changed_content_is_never_served_stale_even_with_restored_mtime(images, tmp_path) -> None:
    home = tmp_path / "cache"
    first = open_cache(images, CACHE_SIZE, home=home)
    target = images[2]  # BMP: same size in bytes after the edit
    st, size = os.stat(target), os.path.getsize(target)
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the edit from size + mtime
    assert os.path.getsize(target) == size and os.stat(target).st_mtime_ns == st.st_mtime_ns
    second = open_cache(images, CACHE_SIZE, home=home)
    assert second.built and second.folder != first.folder
    assert (second.image(int(second.rows([target])[0])) == 7).all()
    assert not (first.image(int(first.rows([target])[0])) == 7).all()  # the old folder is untouched


def _open_in_process(paths, home, barrier, queue) -> None:
    barrier.wait()
    try:
        cache = open_cache(paths, CACHE_SIZE, home=home, num_threads=1)
        queue.put((str(cache.folder), cache.built, cache.image(0).sum().item()))
    except Exception as err:  # reported to the test instead of a silent exit code
        queue.put(("error", repr(err), 0))


def test_concurrent_opens_build_once(images, tmp_path) -> None:
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=_open_in_process, args=(images, tmp_path / "c", barrier, queue)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    assert not [r for r in results if r[0] == "error"], results
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len({r[0] for r in results}) == 1 and len({r[2] for r in results}) == 1
    assert sum(r[1] for r in results) == 1  # exactly one process decoded the images
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_eval_crops_equal_the_reference_eval_transform(images, tmp_path) -> None:
    cache = open_cache(images, CACHE_SIZE, home=tmp_path / "cache")
    crops = cache.eval_crops(36, 32)
    reference = T.Compose([T.Resize(36), T.CenterCrop(32)])
    for path in images:  # reduced images are decoded again from the original file: still exact
        with Image.open(path) as img:
            expected = np.asarray(reference(img.convert("RGB")))
        assert np.array_equal(crops[cache.rows([path])[0]], expected), path
    assert cache.eval_crops(36, 32).filename == crops.filename  # built once


def test_eval_crops_refuse_an_original_changed_after_opening(images, tmp_path) -> None:
    cache = open_cache(images, CACHE_SIZE, home=tmp_path / "cache")
    _write(images[3], (90, 60), "RGB", seed=99)  # a reduced image: eval crops would read the file
    with pytest.raises(RuntimeError, match="changed after the cache"):
        cache.eval_crops(36, 32)


def test_bad_input_is_reported(images, tmp_path) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        open_cache(images, 0, home=tmp_path)
    with pytest.raises(FileNotFoundError, match="do not exist"):
        open_cache([*images, tmp_path / "missing.jpg"], CACHE_SIZE, home=tmp_path)
    broken = tmp_path / "data" / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(OSError, match="broken.jpg"):
        open_cache([*images, broken], CACHE_SIZE, home=tmp_path)
    cache = open_cache(images, CACHE_SIZE, home=tmp_path)
    with pytest.raises(KeyError, match="not in the cache"):
        cache.rows([broken])
    with pytest.raises(ValueError, match="crop_size"):
        cache.eval_crops(16, 32)


def test_config_fields_are_validated() -> None:
    assert (
        ExperimentConfig.from_dict({"data": {"pipeline": "cached", "cache_size": 300}}).data.cache_size == 300
    )
    with pytest.raises(ConfigError, match="pipeline"):
        ExperimentConfig.from_dict({"data": {"pipeline": "fast"}})
    with pytest.raises(ConfigError, match="cache_size"):
        ExperimentConfig.from_dict({"data": {"cache_size": 0}})
    with pytest.raises(ConfigError, match="augmentation 'base' only"):
        ExperimentConfig.from_dict({"data": {"pipeline": "cached", "augmentation": "realistic"}})


# ------------------------------------------------------------ the cached pipeline behind Loaders / Engine
def _cfg(root: str, pipeline: str, method: str = "diva", **groups) -> ExperimentConfig:
    data = {"pipeline": pipeline, **groups.pop("data", {})}
    return ExperimentConfig.from_dict(tiny_config(root, method, data=data, **groups))


def test_loaders_return_cached_batches_with_the_reference_layout(
    tiny_demo_root, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DCML_CACHE_HOME", str(tmp_path / "cache"))
    cfg = _cfg(tiny_demo_root, "cached")
    bundle = prepare_data(cfg)
    cached, reference = (
        Loaders(cfg, bundle, torch.device("cpu")),
        Loaders(_cfg(tiny_demo_root, "reference"), bundle, torch.device("cpu")),
    )
    loader = cached.train_loader()
    batches = list(loader)
    assert len(batches) == len(loader) == len(reference.train_loader())
    images, labels, indices, view_b = batches[0]
    assert images.shape == view_b.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == indices.dtype == torch.int64
    assert labels.tolist() == [bundle.train[i].label for i in indices.tolist()]
    assert not torch.equal(images, view_b)  # independent draws of the same transform
    for split in ("val", "test"):  # eval inputs: the reference eval transform, up to float rounding
        ours, ref = next(iter(cached.eval_loader(split))), next(iter(reference.eval_loader(split)))
        assert torch.allclose(ours[0], ref[0], atol=1e-5) and torch.equal(ours[1], ref[1])
    train_pass = list(cached.eval_loader("train", train_transform=True))
    assert torch.cat([b[2] for b in train_pass]).tolist() == list(range(len(bundle.train)))
    assert len(train_pass[0]) == 3


def test_cached_batches_follow_the_global_rng_and_sampler_state(
    tiny_demo_root, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DCML_CACHE_HOME", str(tmp_path / "cache"))
    loaders = Loaders(
        _cfg(tiny_demo_root, "cached", "margin"),
        prepare_data(_cfg(tiny_demo_root, "cached", "margin")),
        torch.device("cpu"),
    )
    sampler_state, torch_state = loaders.sampler.state_dict(), torch.get_rng_state()
    first = next(iter(loaders.train_loader()))
    loaders.sampler.load_state_dict(sampler_state)
    torch.set_rng_state(torch_state)
    again = next(iter(loaders.train_loader()))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other = next(iter(loaders.train_loader()))
    assert not torch.equal(first[0], other[0])


def test_training_with_the_cached_pipeline_resumes_exactly(tiny_demo_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DCML_CACHE_HOME", str(tmp_path / "cache"))
    cfg = _cfg(tiny_demo_root, "cached", "diva")  # two views, key-queue pre-fill (a partial pass)
    straight = Engine(cfg)
    straight.train_epoch()
    straight.save(tmp_path / "ckpt")
    straight.train_epoch()
    resumed = Engine.restore(tmp_path / "ckpt")
    resumed.train_epoch()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    metrics = resumed.evaluate("val")
    assert (
        np.isfinite(metrics["val/recall_at_1"])
        and json.loads(resumed.cfg.to_json())["data"]["pipeline"] == "cached"
    )


def test_the_manifest_names_files_as_os_path_relpath_does(tmp_path) -> None:
    """The scan's root and relative paths (what names an existing cache folder) are those of os.path.commonpath and
    os.path.relpath, for nested folders, a single file and paths that pass through '..'."""
    from dcml_core.data.cache_keys import SourceFiles

    files = []
    for c in range(4):
        for i in range(3):
            path = tmp_path / "data" / f"{c:03d}.class" / ("deeper" if i == 2 else "") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * (i + 1))
            files.append(path)
    detour = tmp_path / "data" / "001.class" / ".." / "002.class" / "0.png"
    for paths in (files, files[:1], files[5:9], [detour, files[7]], [str(p) for p in files]):
        unique = sorted({os.path.abspath(p) for p in paths})
        root = os.path.commonpath([os.path.dirname(p) for p in unique])
        scanned = SourceFiles.scan(paths)
        assert scanned.root == Path(root)
        assert scanned.relpaths == tuple(os.path.relpath(p, root) for p in unique)
        assert scanned.stats == tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns, os.stat(p).st_ctime_ns) for p in unique)
