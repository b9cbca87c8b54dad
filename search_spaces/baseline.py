"""The baseline of a space: the published configuration every sweep runs as its first trial.

A space module names it in ``BASELINE`` (dotted names of the sampled parameters -> the paper's values, e.g.
``{"optim.lr": 1.5e-5, "schedule.tau": 55, ...}``); a space without ``BASELINE`` (the demo, whose "published
configuration" is the centre of its ranges) gets the centre of every distribution: the geometric mean of a
log-uniform range, the midpoint of a uniform one, the middle integer of a ``randint``, the middle choice (the
lower one of two). Either way every sampled parameter gets a value inside its range, so the sweep answers "what
did tuning gain over the published setting?".
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform


def centre(domain: Domain) -> Any:
    """The centre of one distribution (see the module docstring)."""
    if isinstance(domain, Categorical):
        return domain.categories[(len(domain.categories) - 1) // 2]
    if isinstance(domain, Integer):
        return (domain.lower + domain.upper - 1) // 2  # randint's upper bound is exclusive
    if isinstance(domain, Float):
        if isinstance(domain.get_sampler(), LogUniform):
            mid = math.exp((math.log(domain.lower) + math.log(domain.upper)) / 2)
        else:
            mid = (domain.lower + domain.upper) / 2
        return float(f"{mid:.6g}")  # 0.001, not 0.0010000000000000002 (still inside the range)
    raise TypeError(f"no centre for a {type(domain).__name__} distribution")


def problem(domain: Domain, value: Any) -> str | None:
    """Why ``value`` cannot be drawn from ``domain``, or None when it can."""
    if isinstance(domain, Categorical):
        return None if value in domain.categories else f"not one of {domain.categories}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if isinstance(domain, Integer):
        ok = isinstance(value, int) and domain.lower <= value < domain.upper
        return None if ok else f"not an integer in [{domain.lower}, {domain.upper - 1}]"
    if isinstance(domain, Float):
        return None if domain.lower <= value <= domain.upper else f"outside [{domain.lower:g}, {domain.upper:g}]"
    return f"a {type(domain).__name__} distribution has no baseline check"


def baseline_of(name: str, distributions: dict[str, Domain], declared: dict[str, Any] | None) -> dict[str, Any]:
    """The checked baseline of the space ``name`` (``declared``: its module's ``BASELINE``, or None)."""
    from search_spaces.search_space import SearchSpaceError

    if declared is None:
        return {key: centre(domain) for key, domain in distributions.items()}
    missing, unknown = sorted(set(distributions) - set(declared)), sorted(set(declared) - set(distributions))
    if missing or unknown:
        raise SearchSpaceError(
            f"search space '{name}': BASELINE must give a value for exactly the sampled parameters; "
            f"missing {missing}, not sampled {unknown}"
        )
    bad = [f"{key}={declared[key]!r} ({why})" for key, domain in distributions.items()
           if (why := problem(domain, declared[key]))]  # fmt: skip
    if bad:
        raise SearchSpaceError(f"search space '{name}': BASELINE values the space cannot draw: {'; '.join(bad)}")
    return dict(declared)
