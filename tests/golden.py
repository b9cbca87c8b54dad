"""Access to the golden reference values recorded from the original DiVA / DCML / Revisiting code.

The values live outside the repository, in ``../shared/golden/reference_values.npz`` next to the checkout
(``DCML_GOLDEN`` names another path). They keep fidelity honest, so a missing file FAILS every golden test
with a message saying where the file is expected. Without the file (e.g. a fresh clone without the shared
folder), set ``DCML_SKIP_GOLDEN=1`` to skip those tests explicitly; CI never sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
GOLDEN_FILE = Path(os.environ.get("DCML_GOLDEN") or GOLDEN_DIR / "reference_values.npz")
SKIP_VARIABLE = "DCML_SKIP_GOLDEN"


def require_golden() -> Path:
    """The golden file; a missing one fails the calling test (or skips it with ``DCML_SKIP_GOLDEN=1``)."""
    if GOLDEN_FILE.is_file():
        return GOLDEN_FILE
    message = (
        f"golden reference values not found at {GOLDEN_FILE} (expected ../shared/golden/reference_values.npz "
        f"next to the repository, see shared/golden/README.md; DCML_GOLDEN=<file> points elsewhere)"
    )
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{message}; skipped because {SKIP_VARIABLE}=1")
    pytest.fail(f"{message}. Set {SKIP_VARIABLE}=1 to skip the golden tests explicitly.", pytrace=False)


def load_golden() -> np.lib.npyio.NpzFile:
    """Open ``reference_values.npz`` (see :func:`require_golden` for a missing file)."""
    return np.load(require_golden())
