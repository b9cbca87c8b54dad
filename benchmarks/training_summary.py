"""Summaries of bench_training.py's raw samples: ratios to the baseline, where the extra time goes, the report."""

from __future__ import annotations

from typing import Any

import numpy as np
from common import busy_warning, describe_load, summarize
from training_step import CLOCKS, COMPONENTS


def _ratios(times: list[float], base: list[float]) -> dict[str, Any]:
    paired = np.asarray(times) / np.asarray(base)
    return {
        "ratio_of_medians": float(np.median(times) / np.median(base)),
        "ratio_paired_median": float(np.median(paired)),
        "ratio_paired_q1_q3": [float(np.percentile(paired, 25)), float(np.percentile(paired, 75))],
    }


def summarise(raw: dict[str, Any], base: str = "margin") -> dict[str, Any]:
    """Per method and clock: step summary, ratios to ``base``, component medians, losses-alone median."""
    out: dict[str, Any] = {}
    for m in raw["steps"]["wall"]:
        out[m] = {"epoch_overhead_s": raw["overhead"][m]}
        for clock in CLOCKS:
            times = raw["steps"][clock][m]
            comps = {c: float(np.median([p[clock][c] for p in raw["parts"][m]])) for c in COMPONENTS}
            out[m][clock] = {
                "step": summarize(times),
                **_ratios(times, raw["steps"][clock][base]),
                "components_median_s": comps,
                "components_sum_s": float(sum(comps.values())),
                "losses_fwd_bwd_median_s": float(np.median([x[clock] for x in raw["losses"][m]])),
            }
    return out


def explain(methods: dict[str, Any], clock: str, base: str = "margin") -> dict[str, Any]:
    """Where the extra time of each method over ``base`` goes, per component, in ms and in base steps."""
    b = methods[base][clock]
    base_step = b["step"]["median_s"]
    diva = methods["diva"][clock]["components_median_s"] if "diva" in methods else b["components_median_s"]
    out: dict[str, Any] = {
        "key_forward_over_baseline_step": diva["keys"] / base_step,
        "key_forward_over_query_forward": diva["keys"] / max(diva["forward"], 1e-12),
    }
    for m, r in methods.items():
        if m == base:
            continue
        r = r[clock]
        delta = {c: r["components_median_s"][c] - b["components_median_s"][c] for c in COMPONENTS}
        out[m] = {
            "extra_ms": {c: round(1e3 * v, 2) for c, v in delta.items()},
            "extra_in_baseline_steps": {c: round(v / base_step, 3) for c, v in delta.items()},
            "predicted_ratio_from_components": r["components_sum_s"] / b["components_sum_s"],
        }
    return out


def report(res: dict[str, Any]) -> None:
    """Print the medians, ratios and the component breakdown."""
    s, mach, methods = res["settings"], res["machine"], res["methods"]
    print(
        f"\ntraining step: {s['arch']}, {s['size']} px, batch {s['batch']}, embed_dim {s['embed_dim']}; "
        f"{mach['device']}, {mach['torch_threads']} torch threads, torch {mach['torch']}; "
        f"{s['rounds']} interleaved rounds after {s['warmup']} warm-up"
    )
    print(f"  {describe_load(res['load'])}")
    print(f"  {'':<7} {'wall clock':^49} | {'process CPU time (all threads)':^49}")
    head = f"{'median ms':>9} {'q1-q3 ms':>13} {'ratio (medians)':>15} {'(paired)':>9}"
    print(f"  {'method':<7} {head} | {head}")
    for m, r in methods.items():
        cells = []
        for clock in CLOCKS:
            st, x = r[clock]["step"], r[clock]
            cells.append(
                f"{1e3 * st['median_s']:9.1f} {1e3 * st['q1_s']:6.0f}-{1e3 * st['q3_s']:<6.0f} "
                f"{x['ratio_of_medians']:14.2f}x {x['ratio_paired_median']:8.2f}x"
            )
        print(f"  {m:<7} {cells[0]} | {cells[1]}")
    for clock in CLOCKS:
        _report_components(res, clock)
    overhead = max(r["epoch_overhead_s"] for r in methods.values())
    print(f"  per-epoch bookkeeping included in each timed step: <= {1e3 * overhead:.2f} ms")
    warning = busy_warning(res["load"])
    if warning:
        print(f"  {warning}")


def _report_components(res: dict[str, Any], clock: str) -> None:
    methods, ex = res["methods"], res["explanation"][clock]
    print(f"  components ({clock}), median ms over {res['settings']['component_rounds']} instrumented steps:")
    print("  " + f"{'method':<7}" + "".join(f"{c:>10}" for c in COMPONENTS) + f"{'sum':>9}{'losses f+b':>12}")
    for m, r in methods.items():
        c = r[clock]["components_median_s"]
        cells = "".join(f"{1e3 * c[k]:10.1f}" for k in COMPONENTS)
        tail = f"{1e3 * r[clock]['components_sum_s']:9.1f}{1e3 * r[clock]['losses_fwd_bwd_median_s']:12.1f}"
        print(f"  {m:<7}{cells}{tail}")
    print(
        f"    key-encoder forward = {ex['key_forward_over_baseline_step']:.2f} baseline steps "
        f"({ex['key_forward_over_query_forward']:.2f}x the query forward with autograd)"
    )
    for m in methods:
        if m in ex:
            parts = ", ".join(f"{c} {v:+.2f}" for c, v in ex[m]["extra_in_baseline_steps"].items())
            print(
                f"    {m} extra, in baseline steps: {parts} "
                f"(components predict {ex[m]['predicted_ratio_from_components']:.2f}x)"
            )
