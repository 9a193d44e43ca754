"""Drift of a camera's video against its reference: data, viewpoint and prediction tests.

No Dagster here; the ``drift_report`` asset stores a reference per camera and writes one
``drift`` row per :class:`DriftTest`::

    ref = build_reference(frames, emb, probs, camera_id="cam1", version=dataset_version,
                          segments=video_ids)            # once per champion; ref.to_bytes()
    new = build_reference(video_frames, video_emb, video_probs, camera_id="cam1",
                          version=video_id)
    rows = detect_drift(CameraReference.from_bytes(blob), new, alpha=0.01)
    queue = needs_labels(video_emb, video_probs, ref.embeddings, budget=50)
"""

from data_quality.drift.detect import REGISTRY, detect_drift, summary
from data_quality.drift.kinds.base import DriftConfig, DriftKind, DriftTest
from data_quality.drift.kinds.data import DATA_STATISTICS, data_drift_tests
from data_quality.drift.kinds.prediction import PREDICTION_STATISTICS, prediction_drift_tests
from data_quality.drift.kinds.viewpoint import VIEWPOINT_STATISTICS, viewpoint_tests
from data_quality.drift.reference import (
    FORMAT,
    FRAME_STATS,
    CameraReference,
    build_reference,
    colour_histogram,
    median_background,
)
from data_quality.drift.sampling import needs_labels
from data_quality.drift.stats import holm, mmd_permutation
from data_quality.drift.viewpoint import CameraShift, estimate_shift

__all__ = [
    "DATA_STATISTICS",
    "FORMAT",
    "FRAME_STATS",
    "PREDICTION_STATISTICS",
    "REGISTRY",
    "VIEWPOINT_STATISTICS",
    "CameraReference",
    "CameraShift",
    "DriftConfig",
    "DriftKind",
    "DriftTest",
    "build_reference",
    "colour_histogram",
    "data_drift_tests",
    "detect_drift",
    "estimate_shift",
    "holm",
    "median_background",
    "mmd_permutation",
    "needs_labels",
    "prediction_drift_tests",
    "summary",
    "viewpoint_tests",
]
