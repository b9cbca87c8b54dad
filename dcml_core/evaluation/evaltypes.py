"""Test-time embeddings of DiVA/DCML ("evaltypes", algorithms.md §2.5 and §3.5).

An evaltype is either one head (``discriminative``) or a weighted concatenation in the reference's format
``Combined_<head>_<head>...-<w1>-<w2>...``, whose embedding is ``n(concat(w1 n(h1), ..., wk n(hk)))``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dcml_core.head_names import DIVA_HEADS

HEAD_ORDER = DIVA_HEADS  # head order of the paper weightings
PAPER_WEIGHTS = {"paper_cub": (0.5, 1, 1, 1), "paper_cars": (0.5, 2, 2, 2), "paper_sop": (1, 1, 1, 1)}
_PAPER_BY_DATASET = {"cub200": "paper_cub", "cars196": "paper_cars", "online_products": "paper_sop"}
_SOP = "online_products"
# `--evaltypes all` of diva_main.py L51-78, by number of features (SOP has its own 4-feature list).
ALL_WEIGHTS = {
    2: ((1, 0.5), (0.5, 1)),
    3: ((1.5, 1, 1), (1, 1, 1), (0.5, 1, 1)),
    4: ((0.75, 1.25, 1.25, 1.25), (0.5, 1, 1, 1), (0.5, 1.5, 1.5, 1.5)),
}
ALL_WEIGHTS_SOP = ((1, 1, 1, 1), (0.5, 1, 1, 1), (1, 0.5, 0.5, 0.5), (1.5, 1, 1, 1))
_PREFIX = "Combined_"
_HEAD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _fmt(weight: float) -> str:
    return f"{weight:g}"  # 1.0 -> "1", 0.75 -> "0.75", as the reference writes them


def combined_spec(names: Sequence[str], weights: Sequence[float]) -> str:
    """The reference's evaltype string for a weighted concatenation of heads."""
    return _PREFIX + "_".join(names) + "".join(f"-{_fmt(w)}" for w in weights)


def parse_evaltype(spec: str) -> tuple[list[str], list[float]]:
    """Head names and weights of an evaltype: ``discriminative`` -> (['discriminative'], [1.0])."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"an evaltype must be a non-empty string, got {spec!r}")
    if not spec.startswith(_PREFIX):
        if not _HEAD_NAME.fullmatch(spec):
            raise ValueError(
                f"evaltype {spec!r} is neither a head name (letters and digits) nor "
                f"'Combined_<head>_<head>...-<w1>-<w2>...', e.g. 'Combined_discriminative_shared-0.5-1'"
            )
        return [spec], [1.0]
    head_part, *weight_part = spec[len(_PREFIX) :].split("-")
    names = head_part.split("_")
    if not all(_HEAD_NAME.fullmatch(n) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"evaltype {spec!r}: head names must be distinct, letters and digits, joined by '_'")
    if len(weight_part) != len(names):
        raise ValueError(
            f"evaltype {spec!r}: {len(names)} heads but {len(weight_part)} weights; give one each"
        )
    try:
        weights = [float(w) for w in weight_part]
    except ValueError:
        raise ValueError(f"evaltype {spec!r}: weights must be numbers, got {weight_part}") from None
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"evaltype {spec!r}: weights must be finite and positive, got {weights}")
    return names, weights


def evaltype_key(spec: str) -> str:
    """Short MLflow-safe name of an evaltype for metric names: ``combined_0.5-1-1-1``, ``discriminative``.

    The head names are left out only for the four standard heads in the paper order; otherwise they are kept
    (``combined_discriminative_shared_1-0.5``), so different evaltypes never share a key.
    """
    names, weights = parse_evaltype(spec)
    if not spec.startswith(_PREFIX):
        return names[0]
    heads = "" if tuple(names) == HEAD_ORDER else "_".join(names) + "_"
    return f"combined_{heads}" + "-".join(_fmt(w) for w in weights)


def combine_heads(
    heads: Mapping[str, torch.Tensor | np.ndarray],
    names: Sequence[str],
    weights: Sequence[float],
    normalize_heads: bool = True,
) -> torch.Tensor:
    """Embedding (N, sum D_i) = n(concat(w_1 n(h_1), ..., w_k n(h_k))) of the named heads.

    The reference concatenates the model's head outputs, which its model has already normalised;
    ``normalize_heads=False`` skips the inner n() for bit-identical features from such heads (with it, the
    result differs by about 1 ulp).
    """
    missing = [n for n in names if n not in heads]
    if missing:
        raise ValueError(f"unknown head(s) {missing}; available heads: {sorted(heads)}")
    if len(names) != len(weights) or not names:
        raise ValueError(f"give one weight per head: {len(names)} heads, {len(weights)} weights")
    parts = [torch.as_tensor(heads[n]) for n in names]  # each (N, D_i)
    if len({p.shape[0] for p in parts}) != 1 or any(p.ndim != 2 for p in parts):
        raise ValueError(f"heads must be 2-D with equal rows, got shapes {[tuple(p.shape) for p in parts]}")
    if normalize_heads:
        parts = [F.normalize(p, dim=-1) for p in parts]
    return F.normalize(torch.cat([w * p for w, p in zip(weights, parts)], dim=-1), dim=-1)  # (N, sum D_i)


def _all_evaltypes(features: Sequence[str], dataset: str) -> list[str]:
    if len(features) == 1:
        return [features[0]]
    if len(features) not in ALL_WEIGHTS:
        raise ValueError(
            f"'all' is defined for 1 to 4 features (diva_main.py), got {len(features)}: {features}"
        )
    table = ALL_WEIGHTS_SOP if dataset == _SOP and len(features) == 4 else ALL_WEIGHTS[len(features)]
    return [combined_spec(features, w) for w in table]


def _paper_evaltype(name: str, features: Sequence[str], dataset: str) -> str:
    if name == "paper":
        if dataset not in _PAPER_BY_DATASET:
            raise ValueError(f"'paper' weightings exist for {sorted(_PAPER_BY_DATASET)}, not {dataset!r}")
        name = _PAPER_BY_DATASET[dataset]
    missing = [h for h in HEAD_ORDER if h not in features]
    if missing:
        raise ValueError(
            f"{name!r} combines the heads {list(HEAD_ORDER)}, but {missing} are not among {features}"
        )
    return combined_spec(HEAD_ORDER, PAPER_WEIGHTS[name])


def expand_evaltypes(evaltypes: Sequence[str], features: Sequence[str], dataset: str) -> list[str]:
    """Expand ``all``, ``paper`` and ``paper_cub``/``paper_cars``/``paper_sop``; check every head exists.

    The result keeps the given order without duplicates; its first entry is the primary evaltype.
    """
    features = list(features)
    out: list[str] = []
    for spec in evaltypes:
        if spec == "all":
            expanded = _all_evaltypes(features, dataset)
        elif spec == "paper" or spec in PAPER_WEIGHTS:
            expanded = [_paper_evaltype(spec, features, dataset)]
        else:
            names, weights = parse_evaltype(spec)
            unknown = [n for n in names if n not in features]
            if unknown:
                raise ValueError(
                    f"evaltype {spec!r} uses unknown head(s) {unknown}; available heads: {features}; "
                    f"named evaltypes: ['all', 'paper', {', '.join(repr(p) for p in PAPER_WEIGHTS)}]"
                )
            expanded = [combined_spec(names, weights) if spec.startswith(_PREFIX) else spec]  # canonical form
        out += [e for e in expanded if e not in out]
    return out
