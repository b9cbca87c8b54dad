"""What a trained model does, seen on the test split: a retrieval grid and a 2-D map of the embeddings.

Both take the :class:`~analysis.embeddings.SplitEmbeddings` of a split and one embedding of it (a head or an
evaltype, :func:`~analysis.embeddings.embedding_of`) and return a matplotlib ``Figure`` (no pyplot state; save
with :func:`analysis.plots.save_figure`).
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from sklearn.manifold import TSNE

from analysis.embeddings import SplitEmbeddings
from dcml_core.evaluation import knn

RIGHT, WRONG = "#1a9641", "#d7191c"  # neighbour of the query's class / of another class
THUMB = 96  # pixels of a thumbnail's longer side


def pick_queries(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` query rows from distinct classes (as many classes as possible), seeded, in row order."""
    if n < 1:
        raise ValueError(f"the number of queries must be positive, got {n}")
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    rows = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes[:n]]
    if len(rows) < n:  # fewer classes than queries: fill with other rows
        rest = np.setdiff1d(np.arange(len(labels)), rows)
        rows += rng.choice(rest, size=min(n - len(rows), len(rest)), replace=False).tolist()
    return np.sort(np.asarray(rows, dtype=np.int64))


def retrieval_grid(
    emb: SplitEmbeddings,
    embedding: torch.Tensor,
    n_queries: int = 8,
    k: int = 6,
    seed: int = 0,
    title: str = "",
) -> Figure:
    """One row per query: the query image, then its ``k`` nearest neighbours among the other images of the
    split, framed green when of the query's class and red (with the class written in red) when not."""
    if not 1 <= k < len(emb):
        raise ValueError(f"k must be between 1 and {len(emb) - 1} (the other images of the split), got {k}")
    queries = pick_queries(emb.labels, n_queries, seed)
    neighbours = knn(embedding, k)[queries]  # (Q, k), nearest first, the query itself left out
    fig = Figure(figsize=(1.5 * (k + 1) + 0.3, 1.9 * len(queries) + 0.7))
    axes = fig.subplots(len(queries), k + 1, squeeze=False)
    for row, (q, found) in enumerate(zip(queries, neighbours)):
        _tile(axes[row, 0], emb.paths[q], _short(f"query: {emb.class_names[q]}"), "black", 2.5)
        for col, j in enumerate(found, start=1):
            right = emb.labels[j] == emb.labels[q]
            label = f"#{col}" if right else _short(f"#{col} {emb.class_names[j]}")
            _tile(axes[row, col], emb.paths[j], label, RIGHT if right else WRONG, 3.0)
    hits = (emb.labels[neighbours] == emb.labels[queries][:, None]).mean()
    head = title or "Retrieval on the test split"
    fig.suptitle(
        f"{head}\n{len(queries)} queries, {k} nearest neighbours each; green: same class, red: wrong class "
        f"({100 * hits:.0f}% right)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def embedding_map(
    emb: SplitEmbeddings,
    embedding: torch.Tensor,
    max_points: int = 3000,
    seed: int = 0,
    title: str = "",
) -> Figure:
    """t-SNE (scikit-learn, seeded, PCA initialisation) of the embedding, one colour per class.

    At most ``max_points`` rows are drawn (a seeded random subset of a larger split). Classes are named in a
    legend up to 20 classes; above that the colours only separate neighbouring classes.
    """
    n = len(emb)
    if n < 5:
        raise ValueError(f"a t-SNE map needs at least 5 images, the split has {n}")
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    x = embedding[torch.as_tensor(rows)].numpy().astype(np.float32)  # (M, D)
    perplexity = float(min(30.0, (len(rows) - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)  # (M, 2)
    labels = emb.labels[rows]
    classes = np.unique(labels)
    names = {int(lab): emb.class_names[int(np.flatnonzero(emb.labels == lab)[0])] for lab in classes}
    cmap = colormaps["tab20" if len(classes) <= 20 else "turbo"]
    fig = Figure(figsize=(7.8 if len(classes) <= 20 else 6.4, 6.0))
    ax = fig.subplots()
    for i, lab in enumerate(classes):
        colour = cmap(i % 20 if len(classes) <= 20 else i / max(len(classes) - 1, 1))
        part = labels == lab
        ax.scatter(
            xy[part, 0], xy[part, 1], s=14, color=colour, label=_short(names[int(lab)], 40), alpha=0.85
        )
    ax.set(xticks=[], yticks=[])
    shown = f"{len(rows)} of {n}" if len(rows) < n else f"{n}"
    ax.set_title(
        f"{title or 'Test embeddings'}\nt-SNE of {shown} images, {len(classes)} classes (colour = class)",
        fontsize=10,
    )
    if len(classes) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=1.5)
    fig.tight_layout()
    return fig


def _tile(ax: object, path: str, label: str, colour: str, width: float) -> None:
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((THUMB, THUMB))
        ax.imshow(np.asarray(img))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    h, w = ax.get_images()[0].get_array().shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor=colour, linewidth=width, clip_on=False))
    ax.set_xlabel(label, fontsize=7, color=colour if colour != "black" else "black", labelpad=2)


def _short(name: str, width: int = 22) -> str:
    """A class name in at most two lines of ``width`` characters (CUB's ``001.`` prefix and ``_`` dropped)."""
    name = re.sub(r"\b\d{3}\.", "", name)  # CUB: "001.Black_footed_Albatross"
    lines = textwrap.wrap(name.replace("_", " "), width) or [""]
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width, placeholder="…")]
    return "\n".join(lines)
