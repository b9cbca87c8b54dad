"""A missing golden file fails the golden tests unless DCML_SKIP_GOLDEN=1 skips them explicitly."""

from __future__ import annotations

import pytest

from tests import golden


def test_missing_golden_file_fails_and_says_where(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "nowhere" / "reference_values.npz"
    monkeypatch.setattr(golden, "GOLDEN_FILE", missing)
    monkeypatch.delenv(golden.SKIP_VARIABLE, raising=False)
    with pytest.raises(pytest.fail.Exception) as err:
        golden.load_golden()
    assert str(missing) in str(err.value) and "DCML_SKIP_GOLDEN=1" in str(err.value)


@pytest.mark.parametrize("value, outcome", [("1", pytest.skip.Exception), ("0", pytest.fail.Exception)])
def test_only_the_explicit_opt_out_skips(monkeypatch, tmp_path, value, outcome) -> None:
    monkeypatch.setattr(golden, "GOLDEN_FILE", tmp_path / "reference_values.npz")
    monkeypatch.setenv(golden.SKIP_VARIABLE, value)
    with pytest.raises(outcome, match="golden reference values not found"):
        golden.require_golden()


def test_present_golden_file_loads() -> None:
    with golden.load_golden() as data:
        assert "metrics_features" in data.files
