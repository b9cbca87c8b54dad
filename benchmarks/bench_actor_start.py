"""How long a trial's actor takes to start on a local Ray: workers given the environment by a job ``runtime_env``
versus inherited from the driver's environment (what ``tune.cluster.start_ray`` does for a local Ray).

Each round starts a fresh local Ray in a subprocess, waits 4 s (Ray prestarts idle workers meanwhile), then times
the creation of one actor until its first method returns. A plain actor can start in a prestarted worker; a Tune
trial cannot (Tune gives every trainable actor a runtime environment of its own), which is why the sweep's local Ray
now starts no idle workers at all (``tune.cluster.NO_PRESTARTED_WORKERS``, docs/performance.md). Usage::

    python benchmarks/bench_actor_start.py            # 3 rounds of each, alternating

Prints the times (no JSON: a start-up detail quoted in docs/performance.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from common import LoadMonitor, describe_load  # noqa: I001 - common first: it puts the repository on sys.path

CHILD = r"""
import os, sys, time, ray
env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "OMP_WAIT_POLICY": "PASSIVE"}
if sys.argv[1] == "environ":
    os.environ.update(env)
    ray.init(include_dashboard=False, logging_level="ERROR")
else:
    ray.init(include_dashboard=False, logging_level="ERROR", runtime_env={"env_vars": env})
time.sleep(4)

@ray.remote(num_cpus=1)
class Trial:
    def ready(self):
        return os.environ.get("OMP_WAIT_POLICY")

start = time.perf_counter()
assert ray.get(Trial.remote().ready.remote()) == "PASSIVE"
print(time.perf_counter() - start)
ray.shutdown()
"""


def main() -> None:
    monitor, times = LoadMonitor(), {"runtime_env": [], "environ": []}
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    for _ in range(3):
        for mode in times:
            out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True)
            times[mode].append(float(out.stdout.strip().splitlines()[-1]))
    for mode, ts in times.items():
        print(f"{mode:12s} actor ready after {statistics.median(ts):.2f} s (median of {len(ts)}: "
              f"{', '.join(f'{t:.2f}' for t in ts)})")  # fmt: skip
    print(describe_load(monitor.stop()))


if __name__ == "__main__":
    main()
