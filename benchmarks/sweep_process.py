"""Running one sweep as a subprocess for the benchmarks: ``python tune/run.py --space demo`` in a temporary
folder (its own ``--storage``, ``--mlflow-uri`` and Ray temp folder, ``OMP_WAIT_POLICY=PASSIVE``), every output
line time-stamped as it arrives, the CPU time of its processes (found by an environment marker, stopped by PID),
and Ray's results read back. Used by ``bench_sweep_overhead.py`` and ``bench_early_stopping.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import REPO

RUN_PY = REPO / "tune" / "run.py"
MARKER = "DCML_BENCH_SWEEP"  # environment variable that tags the sweep's processes (driver, Ray, workers)
_EVENT = re.compile(r"\] trial (\S+) (started|epoch (\d+)/\d+|finished|stopped early|FAILED)")
_SESSION = re.compile(r"session_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)_(\d+)_\d+$")


@dataclass
class SweepRun:
    """One finished sweep subprocess: its time-stamped output, its folder and the trials' results."""

    command: list[str]
    returncode: int
    wall_s: float
    lines: list[tuple[float, str]]  # (seconds since process start, line)
    sweep_dir: Path
    ray_session_s: float | None  # Ray session folder created, seconds since process start
    cpu_s: float  # CPU time of the sweep's processes (driver, Ray, workers)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # trial id -> rows by epoch
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> sampled config

    def events(self) -> list[tuple[float, str, str, int | None]]:
        """(time, trial id, kind, epoch) of the driver's progress lines."""
        out = []
        for t, line in self.lines:
            m = _EVENT.search(line)
            if m:
                kind = "epoch" if m.group(3) else m.group(2).split()[0]
                out.append((t, m.group(1), kind, int(m.group(3)) if m.group(3) else None))
        return out

    def own_s(self) -> float:
        """Sum of the trials' own training + evaluation time over all reported epochs."""
        return sum(r["time/train_s"] + r["time/eval_s"] for rows in self.results.values() for r in rows)

    def epochs(self) -> int:
        """Trained epochs (epoch 0, the starting network's evaluation, is not one)."""
        return sum(1 for rows in self.results.values() for r in rows if r.get("epoch", 1) >= 1)


def child_env(tmp: Path) -> dict[str, str]:
    """Environment of the sweep: passive OpenMP waits, no Ray auth token, private Ray temp folder."""
    env = dict(os.environ)
    env.update(
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONUNBUFFERED="1",
        RAY_AUTH_MODE="disabled",
        RAY_TMPDIR=str(tmp / "ray_tmp"),
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
        **{MARKER: str(tmp)},
    )
    (tmp / "ray_tmp").mkdir(parents=True, exist_ok=True)
    return env


def warm_up(tmp: Path, env: dict[str, str]) -> float:
    """``--dry-run`` of the demo space: builds the demo data if it is not cached; returns its wall time."""
    cmd = [sys.executable, str(RUN_PY), "--space", "demo", "--dry-run", "--storage", str(tmp / "dry")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"warm-up dry run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def session_start(ray_tmp: Path, t0_epoch: float) -> float | None:
    """Creation time of this run's Ray session (from the folder name), in seconds after ``t0_epoch``.

    The Ray temp folder may hold sessions of earlier runs: the first one created after ``t0_epoch`` is ours.
    """
    starts = []
    for d in [*ray_tmp.glob("session_2*"), *ray_tmp.glob("*/session_2*")]:
        m = _SESSION.match(d.name)
        if m:
            stamp = time.mktime(time.strptime(m.group(1), "%Y-%m-%d_%H-%M-%S")) + int(m.group(2)) / 1e6
            starts.append(stamp - t0_epoch)
    ours = [t for t in starts if t >= -1.0]  # folder names have microseconds; allow clock granularity
    return min(ours) if ours else None


def read_trials(sweep_dir: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Per trial: its result rows (``result.json``) and its config (``params.json``), keyed by trial id."""
    results, configs = {}, {}
    for d in sorted(sweep_dir.glob("trial_*")):
        tid = d.name.removeprefix("trial_")
        rows = [json.loads(ln) for ln in (d / "result.json").read_text().splitlines() if ln.strip()]
        results[tid] = sorted(rows, key=lambda r: r["training_iteration"])
        configs[tid] = json.loads((d / "params.json").read_text())
    return results, configs


def tagged_pids(tag: str) -> dict[int, float]:
    """PID -> CPU seconds (user + system) of the running processes whose environment holds ``MARKER=tag``."""
    needle = f"{MARKER}={tag}".encode()
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (proc_dir / "environ").read_bytes().split(b"\0"):
                continue
            stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(proc_dir.name)] = (int(stat[11]) + int(stat[12])) / ticks  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return out


class TreeCPU(threading.Thread):
    """Polls the CPU time of the sweep's processes (tagged by environment) once a second until stopped."""

    def __init__(self, tag: str) -> None:
        super().__init__(daemon=True)
        self.tag, self.last_seen, self._stop_event = tag, {}, threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            self.last_seen.update(tagged_pids(self.tag))

    def stop(self) -> float:
        """CPU seconds used by the tagged processes (last sample of each; short-lived ones may be missed)."""
        self._stop_event.set()
        self.join()
        return sum(self.last_seen.values())


def stop_leftovers(tag: str) -> list[int]:
    """SIGKILL processes of this sweep (tagged by us) that outlived its driver; returns their PIDs."""
    killed = []
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return killed


def run_sweep(tmp: Path, name: str, flags: list[str], echo: bool = True) -> SweepRun:
    """Run ``tune/run.py --space demo`` with ``flags`` in ``tmp``; time-stamp every output line."""
    env = child_env(tmp)
    cmd = [
        sys.executable, str(RUN_PY), "--space", "demo", "--name", name,
        "--storage", str(tmp / "ray"), "--mlflow-uri", str(tmp / "mlflow"), *flags,
    ]  # fmt: skip
    lines: list[tuple[float, str]] = []
    cpu = TreeCPU(str(tmp))
    cpu.start()
    t0_epoch, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            if echo and _EVENT.search(line):
                print(f"    {lines[-1][0]:7.1f}s {line.rstrip()}", flush=True)
        rc = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: only the sweep and its Ray
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    cpu_s = cpu.stop()
    leftovers = stop_leftovers(str(tmp))
    if leftovers:
        print(f"    stopped {len(leftovers)} leftover Ray process(es) of this run: {leftovers}")
    if rc != 0:
        tail = "\n".join(ln for _, ln in lines[-30:])
        raise RuntimeError(f"sweep exited with {rc}: {' '.join(cmd)}\n{tail}")
    run = SweepRun(cmd, rc, wall, lines, tmp / "ray" / name, session_start(tmp / "ray_tmp", t0_epoch), cpu_s)
    run.results, run.configs = read_trials(run.sweep_dir)
    return run


def with_sweep_cpu(load: dict[str, Any], sweep_cpu_s: float) -> dict[str, Any]:
    """Load figures with the sweeps' processes counted as this benchmark's.

    Ray workers are not children this process waits for: ``LoadMonitor`` alone counts them as other processes.
    """
    out = dict(load, sweep_cpu_s=round(sweep_cpu_s, 1))
    if "busy_cores_all" in load and load["wall_s"] > 0:
        ours = sweep_cpu_s / load["wall_s"]
        out["busy_cores_benchmark"] = round(ours, 2)
        out["busy_cores_other_processes"] = round(max(load["busy_cores_all"] - ours, 0.0), 2)
    return out
