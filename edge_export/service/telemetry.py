"""Box telemetry of ``lensline-edge serve``: compact frame statistics and heartbeat segments.

Every ``heartbeat_s`` the service writes one JSON line per camera (see :func:`heartbeat_fields`
for the fields) to ``<out>/telemetry/<camera>/<camera>__<start>.jsonl`` (rolling segments of
``telemetry.segment_s``, :class:`edge_export.service.segments.Segments`); a closed segment is
published to the lake's ``landing/telemetry/<box>/``, where ``fleet_sensor`` turns it into the
``edge_fleet`` asset. The same heartbeat goes to MQTT when the box has a ``mqtt:`` section.

**Frame statistics.** Each camera's :class:`FrameStatsWindow` accumulates the statistics of every
inspected frame since the previous beat: :func:`edge_export.quality.frame_stats` on the raw
decoded frame -- the very numbers the lake's ``frames`` table, the drift references and
``drift_report`` use (sharpness, a Laplacian variance, depends on the resolution, so a
downscaled copy would not compare with the reference). The service already measures them on the
preprocessing pool for the alarm rules' dark/blurry filter, so telemetry adds only the binning.
Per statistic a beat carries ``n, mean, std`` and a histogram over the fixed :data:`EDGES`
(shared with the graph side, ``data_quality.fleet``).

No embedding sketch: bundles carry no embedding output today (the exported model's outputs are
the class scores only), so none is sent rather than a fake one.

numpy only (the standalone edge runner imports it).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "EDGES",
    "FRAME_STATS",
    "FrameStatsWindow",
    "heartbeat_fields",
    "histogram",
    "software_version",
]

FRAME_STATS: tuple[str, ...] = ("brightness", "contrast", "sharpness")
"""The statistics of :func:`edge_export.quality.frame_stats`, in the drift reference's order."""

EDGES: dict[str, np.ndarray] = {
    # mean grey level 0..255: 16 bins of 16 grey levels
    "brightness": np.linspace(0.0, 256.0, 17),
    # standard deviation of the grey levels (0..~128): 16 bins of 8
    "contrast": np.linspace(0.0, 128.0, 17),
    # variance of the Laplacian spans decades: 16 log-spaced bins from 1 to 10^4 (plus 0)
    "sharpness": np.concatenate([[0.0], np.logspace(0.0, 4.0, 16)]),
}
"""Fixed bin edges per statistic (17 edges, 16 bins); values outside fall in the end bins."""


def histogram(name: str, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins of :data:`EDGES` ``[name]``, outliers in the end bins.

    Parameters
    ----------
    name : str
        One of :data:`FRAME_STATS`.
    values : np.ndarray
        float (N,).

    Returns
    -------
    np.ndarray
        int64 (16,).
    """
    edges = EDGES[name]
    idx = np.clip(
        np.searchsorted(edges, np.asarray(values, float), side="right") - 1, 0, len(edges) - 2
    )
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)


@dataclass
class FrameStatsWindow:
    """Frame statistics of one camera since the last :meth:`take` (one heartbeat's worth)."""

    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in FRAME_STATS})

    def add(self, stats: Mapping[str, float] | None) -> None:
        """One frame's :func:`edge_export.quality.frame_stats` (None: not measured, skipped)."""
        if stats is None:
            return
        for k in FRAME_STATS:
            self.values[k].append(float(stats[k]))

    def take(self) -> dict[str, dict[str, Any]]:
        """``{stat: {n, mean, std, hist}}`` of the frames since the previous call, then reset
        (``mean``/``std`` None without frames; ``hist`` over :data:`EDGES`)."""
        out: dict[str, dict[str, Any]] = {}
        for k in FRAME_STATS:
            v = np.asarray(self.values[k], float)
            out[k] = {
                "n": int(v.size),
                "mean": round(float(v.mean()), 4) if v.size else None,
                "std": round(float(v.std()), 4) if v.size else None,
                "hist": histogram(k, v).tolist(),
            }
            self.values[k] = []
        return out


def software_version() -> str:
    """The installed ``lensline`` distribution's version (``unknown`` when not installed)."""
    try:
        return importlib.metadata.version("lensline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def heartbeat_fields(
    deployed: Any,
    stream: Mapping[str, Any],
    *,
    shadow_frames: int,
    shadow_agree: int,
) -> dict[str, Any]:
    """The heartbeat fields telemetry adds to the service's own (see the module docstring).

    ``models``: ``{role: {model_version, bundle_sha256, bundle}}`` of what runs (empty before
    the first deployment); ``dropped, decoded, skipped``, ``stream_state``, ``gaps``,
    ``gap_s`` from the live source's counters; ``shadow_frames`` / ``shadow_agree``: frames
    the shadow scored and those where it agreed with the champion since the previous beat
    (``shadow_agreement`` their ratio, None without a shadow frame).
    """
    models: dict[str, Any] = {}
    if deployed is not None:
        for role in ("champion", "shadow"):
            model = getattr(deployed, role, None)
            if model is not None:
                b = model.bundle
                models[role] = {
                    "model_version": b.model_version,
                    "bundle_sha256": getattr(b, "sha256", None),
                    "bundle": str(getattr(b, "path", "")) or None,
                }
    return {
        "models": models,
        "decoded": int(stream.get("decoded", 0) or 0),
        "dropped": int(stream.get("dropped", 0) or 0),
        "skipped": int(stream.get("skipped", 0) or 0),
        "stream_state": stream.get("state"),
        "gaps": int(stream.get("gaps_total", 0) or 0),
        "gap_s": float(stream.get("gap_s_total", 0.0) or 0.0),
        "shadow_frames": shadow_frames,
        "shadow_agree": shadow_agree,
        "shadow_agreement": round(shadow_agree / shadow_frames, 4) if shadow_frames else None,
        "software_version": software_version(),
    }
