"""The analysis notebooks execute headless (nbclient, kernel ``python3``): ``explore_sweep`` on the real small
sweep of tests/analysis_sweep.py (opening on the newest experiment by default, with the checkpoint views),
``compare_sweeps`` on the synthetic store of tests/test_analysis.py."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

from tests.analysis_sweep import small_sweep
from tests.test_analysis import compact, shared_store
from tests.test_tune_support import tiny_demo  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "analysis" / "notebooks"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> KernelManager:
    """One ``python3`` kernel for both notebooks (started once: imports dominate), reset between them."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DCML_")},
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path_factory.mktemp("kernel_cwd")))
    yield km
    km.shutdown_kernel(now=True)


def _run(name: str, km: KernelManager, env: dict[str, str]) -> list[dict]:
    """Execute a notebook with the ``DCML_*`` settings ``env`` (after ``%reset -f``, so nothing leaks from the
    previous one); its outputs."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    setup = "import os\nfor _k in [k for k in os.environ if k.startswith('DCML_')]: del os.environ[_k]\n"
    setup += f"os.environ.update({env!r})"
    book.cells[:0] = [nbformat.v4.new_code_cell("%reset -f"), nbformat.v4.new_code_cell(setup)]
    NotebookClient(book, km=km, timeout=120).execute()
    outputs = [out for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    return outputs


def _markdown(outputs: list[dict]) -> str:
    return compact("".join(o.get("data", {}).get("text/markdown", "") for o in outputs))


def _html(outputs: list[dict]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def test_explore_sweep_notebook_opens_on_the_newest_sweep(kernel, tmp_path_factory, tiny_demo) -> None:  # noqa: F811
    sweep = small_sweep(tmp_path_factory, tiny_demo)
    env = {"DCML_TRACKING_URI": sweep.tracking_uri, "DCML_VIEWS_TOP_K": "1", "DCML_WEIGHT_TRIALS": "5"}
    outputs = _run("explore_sweep.ipynb", kernel, env)  # no DCML_EXPERIMENT: the newest sweep
    shown = [o.get("data", {}).get("text/plain", o.get("text", ""))[:80] for o in outputs]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 7, (
        shown
    )  # 5 figures, grid and map
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{sweep.name} sqlite:///" in text and "stored Optuna study" in text
    html = _html(outputs)
    assert "optuna_state" in html and "COMPLETE" in html and "FAIL" in html  # the joined table
    assert "tuned on val" in html and "discriminative" in html  # weights and per-head tables


def test_compare_sweeps_notebook(kernel, tmp_path_factory) -> None:
    env = {
        "DCML_TRACKING_URI": shared_store(tmp_path_factory),
        "DCML_EXPERIMENT": "sweep_a",
        "DCML_EXPERIMENT_B": "sweep_a_repeat",
    }
    outputs = _run("compare_sweeps.ipynb", kernel, env)
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 5
    assert "| sweep_a: compos_num=2, lr=0.001 | 1 | 31.00 |" in _markdown(outputs)
    assert "| sweep_a_repeat: compos_num=2, lr=0.001 | 3 | 55.00 ±" in _markdown(outputs)


def test_notebooks_only_call_helpers() -> None:
    """No function, class or loop is defined in a notebook: logic belongs in analysis/."""
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                assert not line.lstrip().startswith(("def ", "class ", "for ", "while ", "lambda")), (
                    path.name,
                    line,
                )
