"""The embedded demo data set: glyphs rendered from the fonts matplotlib ships (no download).

Each character is a class (Latin letters and digits, Greek, Cyrillic); fonts and random size, position,
rotation, stroke and colours give the intra-class variation. Characters that look alike across alphabets or
between cases (A/Alpha/A, o/O, ...) are left out except one per group, and so is every glyph a font
lacks. The images are PNG files in the CUB-style layout ``<root>/images/NNN.<unicode name>/`` and are read
by the same loader as CUB; the class numbers encode a fixed class-disjoint split (first half train, second
half test), stratified over the alphabets and recorded in ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unicodedata
import uuid
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dcml_core.data.records import SplitRecords, read_numbered_folders, split_first_half

DEMO_VERSION = 2  # 2: larger glyphs (70-95 % of the frame, was 45-80 %), rotation +-10 deg (was +-15)
DEMO_DIRNAME = f"demo_v{DEMO_VERSION}"
MANIFEST = "manifest.json"
MISSING_CHAR = "\ue000"  # private use: no text font has it, so it renders as the font's .notdef glyph
SCRIPTS = {
    "latin": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789ÆæŒœØÞ",
    "greek": "".join(chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2)
    + "".join(chr(c) for c in range(0x3B1, 0x3CA)),
    "cyrillic": "".join(chr(c) for c in range(0x410, 0x450)) + "\u0401\u0451" + "ЂЉЊЋЏ",
}
# Groups of characters that look the same once size and position vary, or that are mirror images (the
# training transform flips horizontally): only the first of each group is kept.
LOOKALIKE_GROUPS = (
    "AΑА", "BΒВв", "CcСс", "EΕЕ", "HΗНн", "IΙlι", "KΚКкκ", "MΜМм", "NΝ", "OΟОoοо0", "PΡРpрρ", "Ss",
    "TΤТт", "uυ", "Vvν", "Ww", "XΧХxхχ", "YΥ", "yуУ", "ZΖz", "aа", "eе", "3Зз", "ΓГг", "ΠПп", "ΦФф", "Ψψ",
    "Дд", "Жж", "Ии", "Йй", "Лл", "Цц", "Чч", "Шш", "Щщ", "Ъъ", "Ыы", "Ьь", "Ээ", "Юю", "Яя",
    "bd", "NИ", "RЯ", "3ε",  # mirror images: the reference's random horizontal flip would mix them up
)  # fmt: skip
# Unicode text fonts only: cmex10/cmsy10 map letters to math symbols, LastResort draws block placeholders.
FONT_PATTERNS = ("DejaVuSans*.ttf", "DejaVuSerif*.ttf", "STIXGeneral*.ttf", "cmr10.ttf", "cmb10.ttf",
                 "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf", "cmmi10.ttf")  # fmt: skip


def default_demo_root() -> Path:
    """``$DCML_DATA_HOME/demo_v2`` if that variable is set, else ``~/.cache/dcml_tune/demo_v2`` (the folder name
    carries :data:`DEMO_VERSION`, so a changed renderer never reuses an old build)."""
    home = os.environ.get("DCML_DATA_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "dcml_tune").expanduser() / DEMO_DIRNAME


def demo_characters() -> list[tuple[str, str]]:
    """``(script, character)`` of every candidate class after removing look-alikes."""
    dropped = {ch for group in LOOKALIKE_GROUPS for ch in group[1:]}
    return [(script, ch) for script, chars in SCRIPTS.items() for ch in chars if ch not in dropped]


def font_files() -> list[Path]:
    """The matplotlib TTF fonts used for rendering."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted({p for pattern in FONT_PATTERNS for p in folder.glob(pattern)})


@cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def font_has_glyph(path: str | Path, ch: str) -> bool:
    """True if ``ch`` renders with ink and differs from the font's missing-glyph (.notdef) rendering."""
    font = _font(str(path), 48)
    mask, notdef = font.getmask(ch), font.getmask(MISSING_CHAR)
    if mask.size[0] * mask.size[1] == 0 or max(bytes(mask)) == 0:
        return False
    return (mask.size, bytes(mask)) != (notdef.size, bytes(notdef))


def render_glyph(ch: str, font_path: str | Path, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One RGB image of ``ch``: random font size, rotation, stroke, position, colours and noise."""
    # Large glyphs: the demo trains at 32 px, where a glyph of 45 % of the frame (version 1) is a few pixels.
    font = _font(str(font_path), int(rng.integers(int(0.7 * size), int(0.95 * size) + 1)))
    stroke = round(float(rng.choice([0, 0, 1, 2])) * size / 64)  # 0-2 px at 64 px
    layer = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(layer).text(
        (size, size), ch, font=font, fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    layer = layer.rotate(float(rng.uniform(-10, 10)), resample=Image.BICUBIC)
    glyph = layer.crop(layer.getbbox())
    scale = min(1.0, 0.92 * size / max(glyph.size))
    if scale < 1.0:
        glyph = glyph.resize(
            (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.BICUBIC
        )
    alpha = np.zeros((size, size), np.float32)  # (H, W)
    x, y = (int(rng.integers(0, size - s + 1)) for s in glyph.size)
    alpha[y : y + glyph.height, x : x + glyph.width] = np.asarray(glyph, np.float32) / 255.0
    background, foreground = rng.uniform(165, 255, 3), rng.uniform(0, 110, 3)  # (3,), (3,)
    pixels = background * (1 - alpha[..., None]) + foreground * alpha[..., None]  # (H, W, 3)
    pixels += rng.normal(0.0, rng.uniform(0, 10), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")


def _class_folder(number: int, ch: str) -> str:
    return f"{number:03d}." + unicodedata.name(ch).lower().replace(" ", "_").replace("-", "_")


def _plan_classes(seed: int) -> list[dict]:
    """Classes with their fonts and split: alphabets shuffled and dealt alternately to test and train."""
    fonts = font_files()
    if not fonts:
        raise FileNotFoundError("matplotlib ships no TTF fonts here; the demo data set cannot be rendered")
    rng = np.random.default_rng(seed)
    dealt = []
    for script in SCRIPTS:
        chars = [(s, ch) for s, ch in demo_characters() if s == script]
        chars = [(s, ch, [f.name for f in fonts if font_has_glyph(f, ch)]) for s, ch in chars]
        dealt += [chars[i] for i in rng.permutation(len(chars)) if len(chars[i][2]) >= 4]
    halves = {"train": dealt[1::2], "test": dealt[0::2]}  # train = n // 2: the CUB rule puts it first
    classes, number = [], 0
    for split in ("train", "test"):
        for i in rng.permutation(len(halves[split])):
            script, ch, names = halves[split][i]
            number += 1
            classes.append({"folder": _class_folder(number, ch), "char": ch, "codepoint": f"U+{ord(ch):04X}",
                            "script": script, "split": split, "fonts": names})  # fmt: skip
    return classes


def _build(folder: Path, n_per_class: int, image_size: int, seed: int) -> None:
    start = time.perf_counter()
    classes = _plan_classes(seed)
    font_dir = font_files()[0].parent
    for cls in classes:
        (folder / "images" / cls["folder"]).mkdir(parents=True)
        order = np.random.default_rng((seed, ord(cls["char"]))).permutation(len(cls["fonts"]))
        for j in range(n_per_class):
            font = font_dir / cls["fonts"][order[j % len(order)]]
            img = render_glyph(
                cls["char"], font, np.random.default_rng((seed, ord(cls["char"]), j)), image_size
            )
            img.save(folder / "images" / cls["folder"] / f"{j:04d}.png", optimize=False)
        cls["n_images"] = n_per_class
    manifest = {"version": DEMO_VERSION, "n_per_class": n_per_class, "image_size": image_size, "seed": seed,
                "n_classes": len(classes), "n_images": n_per_class * len(classes),
                "n_train_classes": sum(c["split"] == "train" for c in classes),
                "excluded_lookalikes": [g[1:] for g in LOOKALIKE_GROUPS],
                "build_seconds": round(time.perf_counter() - start, 2), "classes": classes}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")


def read_manifest(folder: Path) -> dict | None:
    """The demo manifest of ``folder``, or None if it is missing or unreadable."""
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(
    folder: Path, n_per_class: int | None = None, image_size: int | None = None, seed: int | None = None
) -> bool:
    """All images of the manifest are there (and the parameters match those given; None accepts any)."""
    m = read_manifest(folder)
    wanted = {"version": DEMO_VERSION, "n_per_class": n_per_class, "image_size": image_size, "seed": seed}
    if m is None or any(v is not None and m.get(k) != v for k, v in wanted.items()):
        return False
    images = folder / "images"
    try:
        return all(len(list((images / c["folder"]).glob("*.png"))) == c["n_images"] for c in m["classes"])
    except (KeyError, TypeError):  # a manifest from an interrupted or foreign writer
        return False


def ensure_demo_dataset(
    root: str | Path | None = None, *, n_per_class: int = 40, image_size: int = 64, seed: int = 0
) -> Path:
    """Return the demo data set folder ``root`` (default :func:`default_demo_root`), built once if needed.

    The set is rendered into a temporary sibling folder and renamed into place, so concurrent builders are
    safe. A folder whose manifest is incomplete or has other parameters is rebuilt.
    """
    if n_per_class < 1 or image_size < 16:
        raise ValueError(f"need n_per_class >= 1 and image_size >= 16, got {n_per_class} and {image_size}")
    root = (Path(root) if root is not None else default_demo_root()).expanduser().resolve()
    if _is_complete(root, n_per_class, image_size, seed):
        return root
    if root.is_dir() and any(root.iterdir()) and read_manifest(root) is None:
        raise ValueError(
            f"'{root}' is not empty and holds no demo data set ({MANIFEST} missing); refusing to overwrite "
            "it. Give an empty or new folder for the demo data set."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    try:
        _build(tmp, n_per_class, image_size, seed)
        _install(tmp, root, lambda: _is_complete(root, n_per_class, image_size, seed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, complete) -> None:
    for _ in range(5):
        try:
            os.rename(tmp, root)  # atomic; fails if root exists and is not empty
            return
        except OSError:
            if complete():  # another process installed a complete set first
                return
            stale = root.with_name(f".{root.name}.stale-{uuid.uuid4().hex}")
            try:
                os.rename(root, stale)
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not move the demo data set into '{root}'")


def resolve_demo_root(root: str | Path | None) -> Path:
    """The demo folder for a user-given root (None: :func:`default_demo_root`).

    That is the folder itself if it holds a demo set or its name starts with ``demo``, else its subfolder
    ``demo_v<DEMO_VERSION>`` (so a ``--data-root`` shared with other data sets works too).
    """
    if root is None:
        return default_demo_root()
    path = Path(root).expanduser().resolve()
    if read_manifest(path) is not None or path.name.startswith("demo"):
        return path
    return path / DEMO_DIRNAME


def load_demo_records(root: str | Path | None = None) -> SplitRecords:
    """The demo split, read with the CUB folder reader (a complete set of any size is used, else built)."""
    folder = resolve_demo_root(root)
    if not _is_complete(folder):
        folder = ensure_demo_dataset(folder)
    train, test = split_first_half(read_numbered_folders(folder / "images"))
    manifest = read_manifest(folder) or {}
    expected = {c["folder"] for c in manifest.get("classes", []) if c["split"] == "train"}
    if {r.class_name for r in train} != expected:
        raise ValueError(f"the demo data set in '{folder}' does not match its {MANIFEST}: delete the folder")
    return SplitRecords(train, test, len(expected), "demo/folders", str(folder))
