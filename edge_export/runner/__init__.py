"""``lensline-edge``: run a verified edge bundle on video or images, on a box without Dagster or torch.

Split along its seams; every public name is importable from here as before:

- :mod:`edge_export.runner.sources`: the inputs (a video file, a folder of videos, an image
  folder) as :class:`Source` streams, their PyAV / image decoding, and the decode thread.
- :mod:`edge_export.runner.pipeline`: preprocessing pool, batched scoring, the alarm state
  machine of each stream, one JSON line per frame, :class:`RunStats` (:func:`run`).
- :mod:`edge_export.runner.cli`: argparse, :func:`main` (the ``lensline-edge`` console
  script), the summary and the exit codes.

Imports numpy, OpenCV, PyAV, onnxruntime and ``cryptography`` only.
"""

from edge_export.runner.cli import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main
from edge_export.runner.pipeline import Model, Prepared, Progress, RunStats, run
from edge_export.runner.sources import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    DecodeError,
    InputError,
    Source,
    discover,
    iter_images,
    iter_video,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "DecodeError",
    "InputError",
    "Model",
    "Prepared",
    "Progress",
    "RunStats",
    "Source",
    "discover",
    "iter_images",
    "iter_video",
    "main",
    "run",
]
