"""faiss on GPU machines, installed once (issue 12 item 3): faiss is an extra, never a requirement of the bare
package; a missing faiss names the install command; the build in use is reported; faiss threads stay within the
CPU share a run is given."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import dcml_core.evaluation.metrics as metrics_module
from dcml_core.device_info import describe_faiss, faiss_build
from dcml_core.evaluation import compute_metrics

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(lines: str) -> list[str]:
    return [re.split(r"[<>=\[; ]", line.strip())[0].lower() for line in lines.splitlines() if line.strip()]


def test_faiss_is_an_extra_so_a_later_plain_install_keeps_a_gpu_build():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = _requirement_names(cfg["options"]["install_requires"])
    assert not [name for name in required if name.startswith("faiss")], required
    extras = cfg["options.extras_require"]
    assert _requirement_names(extras["cpu"]) == ["faiss-cpu"] and _requirement_names(extras["gpu"]) == ["faiss-gpu"]
    bounds = {name: extras[name].strip().removeprefix(f"faiss-{name}") for name in ("cpu", "gpu")}
    assert bounds["cpu"] == bounds["gpu"] == ">=1.8.0.post1,<=1.15.1"  # the range the golden k-means holds for
    assert not any(name.startswith("faiss") for name in _requirement_names(extras["test"]))


def test_the_readme_commands_and_ci_install_faiss_cpu_consistently():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^pip install -e (.+)$", readme, flags=re.MULTILINE)
    assert commands[:2] == ['".[cpu]" && python tune/run.py --space demo', '".[cpu,test]" && python -m pytest -q']
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip ")]
    assert ci == [f"pip install -e {commands[1]}"]  # CI runs exactly the README's test command


def test_a_missing_faiss_names_the_install_command():
    code = "import sys; sys.modules['faiss'] = None\nimport dcml_core.evaluation"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: faiss is not installed") and 'pip install -e ".[cpu]"' in last
    assert 'pip install -e ".[gpu]"' in last


def test_the_faiss_build_is_reported():
    build = faiss_build()
    import faiss

    assert build["version"] == faiss.__version__ and build["gpu_build"] == hasattr(faiss, "StandardGpuResources")
    assert describe_faiss(build).startswith(f"faiss {faiss.__version__} (")
    assert describe_faiss({"version": "1.15.1", "gpu_build": True, "gpus": 1}) == "faiss 1.15.1 (GPU build, 1 GPU)"


def test_faiss_threads_never_exceed_the_cpu_share(monkeypatch):
    used: list[int] = []
    real = metrics_module._faiss_threads
    monkeypatch.setattr(metrics_module, "_faiss_threads", lambda n: (used.append(n), real(n))[1])
    monkeypatch.setattr(metrics_module, "idle_cores", lambda window=0.1: 16)  # a big idle node
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(4200, 8)).astype(np.float32), rng.integers(0, 40, 4200)
    compute_metrics(x, labels, metrics=["recall", "nmi"], nmi_k=40, max_threads=1)
    assert used == [1, 1]  # kNN and k-means: the share, not the idle cores
    compute_metrics(x[:100], labels[:100], metrics=["recall"], max_threads=1)
    assert used[-1] == 1
