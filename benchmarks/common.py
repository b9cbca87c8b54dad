"""Helpers shared by the benchmark scripts: machine description, CPU load of other processes, summaries.

The benchmarks are run as scripts (``python benchmarks/bench_training.py``), so ``benchmarks/`` is first on
``sys.path`` and this module is imported as ``common``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
if str(REPO) not in sys.path:  # dcml_core importable from a plain checkout too
    sys.path.insert(0, str(REPO))

THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat cpu: user nice system [idle iowait] irq softirq steal


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str) -> dict[str, Any]:
    """Cores, CPU model, torch threads and versions, and the device the benchmark ran on."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cuda_available": torch.cuda.is_available(),
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _busy_jiffies() -> float | None:
    """Busy CPU time of the whole machine so far, in seconds (None where /proc/stat does not exist)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(float(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / ticks


def _own_cpu_s() -> float:
    """CPU time of this process and its finished children, in seconds."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """Measures how many cores other processes kept busy while a benchmark ran (from /proc/stat)."""

    def __init__(self) -> None:
        self.loadavg_before = os.getloadavg()
        self._wall = time.perf_counter()
        self._busy = _busy_jiffies()
        self._own = _own_cpu_s()

    def stop(self) -> dict[str, Any]:
        """Load averages before/after and the mean busy cores (all, this benchmark, others) in between."""
        wall = time.perf_counter() - self._wall
        out: dict[str, Any] = {
            "wall_s": wall,
            "loadavg_before": [round(v, 2) for v in self.loadavg_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        }
        busy = _busy_jiffies()
        if busy is not None and self._busy is not None and wall > 0:
            all_cores = (busy - self._busy) / wall
            own = (_own_cpu_s() - self._own) / wall
            out.update(
                busy_cores_all=round(all_cores, 2),
                busy_cores_benchmark=round(own, 2),
                busy_cores_other_processes=round(max(all_cores - own, 0.0), 2),
            )
        return out


def busy_warning(load: dict[str, Any]) -> str | None:
    """A hint when other processes took a core or more: OpenMP threads then spin-wait for each other."""
    import torch

    other = load.get("busy_cores_other_processes", 0.0)
    if (
        other < 0.5
        or torch.get_num_threads() < 2
        or os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    ):
        return None
    return (
        f"note: other processes kept {other:.1f} cores busy while {torch.get_num_threads()} torch threads "
        "spin-waited for each other; wall times are inflated and noisy. For steadier figures rerun with "
        "--threads 1 or OMP_WAIT_POLICY=PASSIVE (see docs/performance.md)."
    )


def describe_load(load: dict[str, Any]) -> str:
    """One line about the machine load during a run."""
    text = f"load average {load['loadavg_before'][0]:.2f} before, {load['loadavg_after'][0]:.2f} after"
    if "busy_cores_other_processes" in load:
        text += (
            f"; other processes kept {load['busy_cores_other_processes']:.2f} of {os.cpu_count()} cores busy "
            f"(this benchmark {load['busy_cores_benchmark']:.2f}) over {load['wall_s']:.0f} s"
        )
    return text


def summarize(times: list[float]) -> dict[str, Any]:
    """Median, quartiles, min and all samples of a list of durations (seconds)."""
    a = np.asarray(times, dtype=np.float64)
    return {
        "median_s": float(np.median(a)),
        "q1_s": float(np.percentile(a, 25)),
        "q3_s": float(np.percentile(a, 75)),
        "min_s": float(a.min()),
        "n": int(a.size),
        "times_s": [round(float(t), 6) for t in a],
    }


def save_json(path: Path, obj: dict[str, Any]) -> Path:
    """Write ``obj`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path
