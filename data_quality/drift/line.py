"""Drift from the line: a camera's recent heartbeats against the reference ``drift_report`` uses.

Boxes do not ship video to say the light changed: every heartbeat carries the mean, spread and
histogram of :func:`edge_export.quality.frame_stats` over the frames inspected since the previous
beat (:mod:`edge_export.service.telemetry`), the same statistic the lake's frames, the camera's
:class:`~data_quality.drift.reference.CameraReference` and ``drift_report`` use.

The tests are ``drift_report``'s ``data`` rows that apply to those numbers, with the same options
(:class:`~data_quality.drift.kinds.base.DriftConfig`): per statistic, Welch's test on block means
(:func:`~data_quality.drift.stats.mean_change_test`) -- the reference's blocks of
``block_size`` consecutive frames against the window's heartbeats, each heartbeat one block of
consecutive frames (its mean) -- with the practical-significance gate ``min_change``, Holm-adjusted
over the rows at ``alpha``. The colour and embedding rows do not apply: heartbeats carry no
colour histogram, and bundles have no embedding output to sketch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import polars as pl

from data_quality.drift.kinds.base import DEFAULT_CONFIG, DriftConfig, DriftTest, adjust
from data_quality.drift.reference import FRAME_STATS, CameraReference
from data_quality.drift.stats import block_ids, block_means, mean_change_test
from data_quality.fleet import LINE_DRIFT_COLUMNS

__all__ = [
    "LINE_DRIFT_COLUMNS",
    "LINE_STATISTICS",
    "heartbeat_window",
    "line_drift_rows",
    "line_drift_tests",
]

LINE_STATISTICS: tuple[str, ...] = FRAME_STATS
"""The ``data`` statistics a heartbeat window is tested on (``drift_report``'s names)."""


def heartbeat_window(heartbeats: pl.DataFrame, *, beats: int) -> pl.DataFrame:
    """A camera's newest ``beats`` heartbeats that measured frames, oldest first.

    Parameters
    ----------
    heartbeats : pl.DataFrame
        ``fleet_heartbeats`` rows of one camera (``at``, ``stat_frames``, ``<stat>_mean``).
    beats : int
        Window length in heartbeats.
    """
    measured = heartbeats.filter(pl.col("stat_frames") > 0).sort("at")
    return measured.tail(beats)


def line_drift_tests(
    reference: CameraReference,
    means: np.ndarray,
    *,
    config: DriftConfig = DEFAULT_CONFIG,
    min_beats: int = 4,
) -> list[DriftTest]:
    """``data`` drift of a window of heartbeats against the camera's reference.

    Parameters
    ----------
    reference : CameraReference
        The camera's reference (``stats``: float (N, 3) in ``FRAME_STATS`` order, ``segment``).
    means : np.ndarray
        float (B, 3): each heartbeat's mean brightness, contrast and sharpness, oldest first.
    config : DriftConfig
        ``drift_report``'s options (``alpha``, ``block_size``, ``min_change``).
    min_beats : int
        Fewer heartbeats than this: every row ``too_few_heartbeats``.

    Returns
    -------
    list of DriftTest
        One row per name in :data:`LINE_STATISTICS`, in that order (kind ``data``).
    """
    new = np.asarray(means, np.float64).reshape(-1, len(FRAME_STATS))
    rb = block_ids(reference.segment, config.block_size)
    ref_blocks = block_means(reference.stats, rb, min_size=config.block_size)
    status = "ok"
    if len(new) < max(2, min_beats):
        status = "too_few_heartbeats"
    elif len(ref_blocks) < 2:
        status = "too_few_reference_frames"
    raw: list[tuple[str, float, float, str, float]] = []
    for j, name in enumerate(LINE_STATISTICS):
        if status != "ok":
            raw.append((name, np.nan, np.nan, status, config.min_change))
            continue
        change, p, _ = mean_change_test(ref_blocks[:, j], new[:, j])
        raw.append((name, change, p, "ok", config.min_change))
    return adjust("data", raw, config.alpha)


def line_drift_rows(
    heartbeats: pl.DataFrame,
    references: Mapping[str, tuple[CameraReference, str]],
    *,
    beats: int,
    min_beats: int,
    severity: str,
    now: datetime,
    config: DriftConfig = DEFAULT_CONFIG,
) -> pl.DataFrame:
    """``line_drift`` rows (``LINE_DRIFT_COLUMNS``) of each camera's newest window.

    Parameters
    ----------
    heartbeats : pl.DataFrame
        ``fleet_heartbeats``.
    references : mapping
        ``camera -> (reference, its model_version)``; a camera without one gets rows with
        status ``no_reference`` (never detected).
    beats, min_beats : int
        Window length, and the fewest heartbeats tested.
    severity : str
        ``WARN`` or ``ERROR``: written on detected rows.
    now : datetime
        ``computed_at``.
    """
    rows = []
    for (camera,), mine in heartbeats.group_by(["camera"], maintain_order=True):
        window = heartbeat_window(mine, beats=beats)
        if window.is_empty():
            continue
        ref = references.get(str(camera))
        if ref is None:
            tests = [
                DriftTest("data", n, np.nan, np.nan, config.alpha, False, "no_reference")
                for n in LINE_STATISTICS
            ]
        else:
            means = window.select([f"{s}_mean" for s in LINE_STATISTICS]).to_numpy()
            tests = line_drift_tests(ref[0], means, config=config, min_beats=min_beats)
        head = {
            "camera": str(camera), "box": window["box"][-1],
            "reference_version": ref[1] if ref else None,
            "window_start": window["at"][0], "window_end": window["at"][-1],
            "beats": window.height, "frames": int(window["stat_frames"].sum()),
            "computed_at": now,
        }  # fmt: skip
        for t in tests:
            rows.append({
                **head, "kind": t.kind, "statistic": t.statistic, "value": t.value,
                "p_value": t.p_value, "p_raw": t.p_raw, "threshold": t.threshold,
                "detected": t.drifted, "status": t.status,
                "severity": severity.upper() if t.drifted else None,
            })  # fmt: skip
    return pl.DataFrame(rows, schema=LINE_DRIFT_COLUMNS).select(list(LINE_DRIFT_COLUMNS))
