"""The preprocessing contract, as the bench imports it: a re-export of :mod:`edge_export.preprocess`.

The contract (crop per camera, size, colour order, normalisation, and the source pixels: the
lake's quality-90 JPEGs) lives in ``edge_export.preprocess``, a numpy + OpenCV leaf module the
standalone edge runner imports without torch, Dagster or polars; training, evaluation,
embeddings and export import it from here. The names are the same objects.
"""

from __future__ import annotations

from edge_export.preprocess import (
    FORMAT,
    LAKE_JPEG_QUALITY,
    MEAN,
    READS,
    STD,
    Crop,
    PreprocessError,
    PreprocessSpec,
    decode_image,
    locate_item,
)

__all__ = [
    "FORMAT",
    "LAKE_JPEG_QUALITY",
    "MEAN",
    "READS",
    "STD",
    "Crop",
    "PreprocessSpec",
    "PreprocessError",
    "locate_item",
    "decode_image",
]
