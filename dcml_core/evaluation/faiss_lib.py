"""The one import of faiss. faiss is not a requirement of the bare package: ``pip install -e ".[cpu]"`` brings
faiss-cpu, GPU machines ``pip install -e ".[gpu]"`` (faiss-gpu, docs/gpu.md); both provide the module ``faiss``,
and neither is pulled by the bare package, so a later ``pip install -e .`` never replaces the GPU build."""

from __future__ import annotations

INSTALL_HINT = (
    'install it with `pip install -e ".[cpu]"` (faiss-cpu) or, on a GPU machine, `pip install -e ".[gpu]"` '
    "(faiss-gpu, see docs/gpu.md); never both: they install the same module"
)

try:
    import faiss
except ImportError as err:  # the message names the command; the original error stays attached
    raise ImportError(f"faiss is not installed: {INSTALL_HINT}") from err

__all__ = ["INSTALL_HINT", "faiss"]
