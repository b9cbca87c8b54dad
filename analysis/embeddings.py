"""Embeddings of a trained checkpoint: load it, embed a split once, evaluate heads and evaltypes on it.

Uses the engine only through its stable surface: :meth:`Engine.restore`, :meth:`Engine.embed` (rows in the
order of the split's records, the loaders do not shuffle) and ``engine.data`` (the records: path, label,
class name). A checkpoint is a folder with ``state.pt`` and ``config.json`` (dcml_core/checkpoint.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dcml_core.checkpoint import CONFIG_FILE, STATE_FILE
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.evaluation import combine_heads, evaltype_key, knn, parse_evaltype, recall_at_k

SUBEMBEDDINGS = "subembeddings"  # DCML evaluated on its raw sub-embeddings: one embedding, no heads


@dataclass(frozen=True)
class SplitEmbeddings:
    """Every head's normalised embedding of one split, with the labels and images of its rows."""

    split: str
    heads: dict[str, torch.Tensor]  # head name -> (N, D)
    labels: np.ndarray  # (N,) int
    paths: list[str]  # (N,) image files
    class_names: list[str]  # (N,)

    def __len__(self) -> int:
        return len(self.labels)


def checkpoint_config(directory: str | Path, data_root: str | None = None) -> ExperimentConfig:
    """The configuration of a checkpoint folder (``data.root`` replaced when given), read without the weights.

    Raises FileNotFoundError naming the missing file, ValueError for a configuration that does not load.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    for name in (CONFIG_FILE, STATE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory} is not a checkpoint folder: {name} is missing (a checkpoint holds {STATE_FILE} "
                f"and {CONFIG_FILE})"
            )
    try:
        cfg = ExperimentConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{directory / CONFIG_FILE} does not hold a valid configuration: {err}") from None
    return cfg.replace(data={"root": str(data_root)}) if data_root else cfg


def load_engine(directory: str | Path, data_root: str | None = None, device: str = "cpu") -> Engine:
    """The engine of a checkpoint, on ``device``, reading its data from ``data_root`` (default: as trained)."""
    cfg = checkpoint_config(directory, data_root)
    return Engine.restore(directory, device=device, cfg=cfg)


def embed_split(engine: Engine, split: str) -> SplitEmbeddings:
    """Embed every image of ``split`` once ('val' or 'test')."""
    records = {"val": engine.data.val, "test": engine.data.test}.get(split)
    if records is None:
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if not records:
        raise ValueError(f"the {split} split of this checkpoint's data is empty")
    heads, labels = engine.embed(split)
    if len(labels) != len(records):
        raise RuntimeError(f"{len(labels)} embeddings for {len(records)} {split} images")
    return SplitEmbeddings(
        split,
        dict(heads),
        labels.numpy().astype(np.int64),
        [r.path for r in records],
        [r.class_name for r in records],
    )


def embedding_of(heads: Mapping[str, torch.Tensor], spec: str) -> torch.Tensor:
    """The (N, D) embedding of an evaltype: a head name, ``Combined_<h>_..-<w>-..`` or ``subembeddings``."""
    if spec == SUBEMBEDDINGS or spec in heads:
        return heads[spec]
    names, weights = parse_evaltype(spec)
    return combine_heads(heads, names, weights)


def recall_at_1(embedding: torch.Tensor, labels: np.ndarray) -> float:
    """Recall@1 of a split against itself (the query left out), as the engine's evaluation computes it."""
    neighbours = knn(embedding, 1)  # (N, 1)
    return recall_at_k(labels[neighbours], labels, [1])[1]


def recall_table(
    splits: Sequence[SplitEmbeddings], rows: Sequence[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Recall@1 of evaltypes on each split: one row per ``(evaltype spec, kind)``, one column per split.

    ``rows`` default to every single head (kind ``head``). Columns: ``evaltype`` (the spec), ``name`` (the head,
    or the evaltype's short key), ``kind``, then ``<split> R@1`` per split.
    """
    if not splits:
        raise ValueError("no split embeddings given")
    heads = splits[0].heads
    table = []
    for spec, kind in rows if rows is not None else [(h, "head") for h in heads]:
        row = {"evaltype": spec, "name": spec if spec in heads else evaltype_key(spec), "kind": kind}
        for emb in splits:
            row[f"{emb.split} R@1"] = recall_at_1(embedding_of(emb.heads, spec), emb.labels)
        table.append(row)
    return pd.DataFrame(table, columns=["evaltype", "name", "kind", *[f"{e.split} R@1" for e in splits]])
