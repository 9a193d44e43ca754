"""Moved to the :mod:`demo` package; this alias stays only until its last caller moves.

The last caller is ``tests/data_quality/test_drift.py`` (``from demo import CONDITIONS, Scene``).
"""

from demo.conditions import CONDITIONS, Conditions
from demo.scene import Scene as _Scene

__all__ = ["CONDITIONS", "Conditions", "_Scene"]
