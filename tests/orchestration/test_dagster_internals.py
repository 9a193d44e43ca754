"""Every private Dagster name Lensline uses resolves on the pinned Dagster, and nothing else in
the code imports ``dagster._`` (orchestration/dagster_internals.py is the one place)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration import dagster_internals

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestration", "assets", "lake", "data_quality", "training", "edge_export", "demo")


@pytest.mark.parametrize("name", sorted(dagster_internals.INTERNALS))
def test_each_internal_name_resolves(name):
    value = dagster_internals.resolve(name)
    assert getattr(dagster_internals, name) is value
    assert value.__name__ == name


def test_a_missing_name_says_which_and_where():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dagster_internals.resolve("Nope")
    dagster_internals.INTERNALS["Gone"] = "dagster._core.nowhere:Gone"
    try:
        with pytest.raises(ImportError, match=r"no dagster\._core\.nowhere:Gone.*as Gone"):
            dagster_internals.resolve("Gone")
    finally:
        del dagster_internals.INTERNALS["Gone"]


def test_no_other_module_imports_dagster_private_api():
    pattern = re.compile(r"^\s*(from|import)\s+dagster\._|[\"']dagster\._", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "dagster_internals.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
