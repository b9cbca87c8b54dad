"""The analysis notebooks execute headless (nbclient, kernel ``python3``) against the small test store."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

from tests.test_analysis import shared_store

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "analysis" / "notebooks"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> KernelManager:
    """One ``python3`` kernel for both notebooks (started once: imports dominate), reset between them."""
    env = {
        **os.environ,
        "DCML_TRACKING_URI": shared_store(tmp_path_factory),
        "DCML_EXPERIMENT": "sweep_a",
        "DCML_EXPERIMENT_B": "sweep_a_repeat",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path_factory.mktemp("kernel_cwd")))
    yield km
    km.shutdown_kernel(now=True)


def _run(name: str, km: KernelManager) -> list[dict]:
    """Execute a notebook (after ``%reset -f``, so nothing leaks from the previous one); its outputs."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    book.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
    NotebookClient(book, km=km, timeout=120).execute()
    outputs = [out for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    return outputs


def _markdown(outputs: list[dict]) -> str:
    return "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)


def test_explore_sweep_notebook(kernel: KernelManager) -> None:
    outputs = _run("explore_sweep.ipynb", kernel)
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 5  # the five figures
    assert "sweep_a sqlite:///" in "".join(o.get("text", "") for o in outputs)
    assert "| compos_num=2, lr=0.001 | 1 | 31.00 |" in _markdown(outputs)  # validation-selected table
    assert "| compos_num=2, lr=0.001 | 1 | 58.00 |" in _markdown(outputs)  # best-test-epoch table


def test_compare_sweeps_notebook(kernel: KernelManager) -> None:
    outputs = _run("compare_sweeps.ipynb", kernel)
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
