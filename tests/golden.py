"""Access to the golden reference values recorded from the original DiVA / DCML / Revisiting code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
GOLDEN_FILE = GOLDEN_DIR / "reference_values.npz"


def load_golden() -> np.lib.npyio.NpzFile:
    """Open ``reference_values.npz``; skip the calling test if the file is absent."""
    if not GOLDEN_FILE.is_file():
        pytest.skip(f"golden reference values not found at {GOLDEN_FILE} (see shared/golden/README.md)")
    return np.load(GOLDEN_FILE)
