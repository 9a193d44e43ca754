"""Label issues and other per-frame data issues, cleanlab style.

Pipeline (what the ``label_issues`` asset calls; ``probs`` and ``embeddings`` are the
held-out outputs of :func:`training.crossval.cross_val_predict`, read back with
:func:`data_quality.pred_probs.held_out_arrays`)::

    issues = find_label_issues(label_codes, probs, keys=frame_keys, features=embeddings,
                               quality=frames_table, classes=classes)

Each issue type is one small class with a stable ``issue_name`` (like
cleanlab's Datalab issue managers), registered once in :data:`REGISTRY`.
Every issue type adds ``is_<issue_name>`` (bool) and ``<issue_name>_score``
(0..1, lower = more severe) columns. When an issue type's inputs are missing
(no ``features`` or no ``quality``) its columns are present but null, so the
table schema never changes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from data_quality.frame_quality import BLURRY_RELATIVE, DARK_BRIGHTNESS, OVEREXPOSED_BRIGHTNESS
from data_quality.pred_probs import cosine_knn_graph

__all__ = [
    "REGISTRY",
    "BlurryIssue",
    "DarkIssue",
    "IssueContext",
    "LabelIssue",
    "NearDuplicateIssue",
    "OutlierIssue",
    "OverexposedIssue",
    "camera_stats",
    "cosine_knn_graph",
    "find_label_issues",
    "issue_counts",
    "worst_examples_grid",
]

_KEYS = ["video_id", "frame_index"]


# ------------------------------------------------------------ issue types ---


class IssueContext:
    """Inputs shared by the issue types for one call of :func:`find_label_issues`.

    Attributes
    ----------
    labels : np.ndarray of shape (N,) int
    pred_probs : np.ndarray of shape (N, K)
    features : np.ndarray of shape (N, D) or None
    quality : pl.DataFrame or None
        ``brightness`` and ``sharpness`` aligned to the N rows (null where missing).
    cameras : np.ndarray of shape (N,)
        Camera of each row (``camera_id`` of ``quality``; one camera for all when absent):
        frame-quality issue types judge a frame against its own camera.
    """

    def __init__(self, labels, pred_probs, features, quality, knn_graph, knn_k: int) -> None:
        self.labels = labels
        self.pred_probs = pred_probs
        self.features = features
        self.quality = quality
        self._graph = knn_graph
        self._knn_k = knn_k

    @cached_property
    def cameras(self) -> np.ndarray:
        """(N,) camera per row; ``"all"`` where unknown."""
        if self.quality is not None and "camera_id" in self.quality.columns:
            return self.quality["camera_id"].fill_null("all").cast(pl.String).to_numpy()
        return np.full(len(self.labels), "all", dtype=object)

    @cached_property
    def knn_graph(self) -> csr_matrix:
        """Shared cosine kNN graph (computed once, used by every Datalab issue type)."""
        if self._graph is not None:
            return self._graph
        return cosine_knn_graph(self.features, k=self._knn_k)

    def has(self, need: str) -> bool:
        if need == "features":
            return self.features is not None and len(self.labels) > 2
        if need in {"brightness", "sharpness"}:
            return self.quality is not None and need in self.quality.columns
        return True


class IssueType:
    """Base class: set ``issue_name``, ``needs`` and ``columns``; implement ``find``."""

    issue_name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[dict[str, Any]]

    def find(self, ctx: IssueContext) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


class LabelIssue(IssueType):
    """Given label probably wrong (cleanlab confident learning).

    ``is_label_issue`` from ``cleanlab.filter.find_label_issues(filter_by=...)``;
    ``label_quality`` from ``cleanlab.rank.get_label_quality_scores(method=...)``
    (0..1, low = likely wrong); ``suggested_label`` is the model's argmax and
    ``suggested_confidence`` its probability.
    """

    issue_name = "label"
    columns: ClassVar[dict[str, Any]] = {
        "given_label": pl.String,
        "suggested_label": pl.String,
        "label_quality": pl.Float64,
        "is_label_issue": pl.Boolean,
        "suggested_confidence": pl.Float64,
    }

    def __init__(
        self, *, filter_by: str = "prune_by_noise_rate", rank_method: str = "self_confidence"
    ):
        self.filter_by, self.rank_method = filter_by, rank_method

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        from cleanlab.filter import find_label_issues as cl_find
        from cleanlab.rank import get_label_quality_scores

        y, p = ctx.labels, ctx.pred_probs
        flagged = np.zeros(len(y), dtype=bool)
        if len(np.unique(y)) > 1:
            flagged = cl_find(y, p, filter_by=self.filter_by, n_jobs=1)
        return {
            "label_quality": get_label_quality_scores(y, p, method=self.rank_method),
            "is_label_issue": flagged,
            "suggested_confidence": p.max(axis=1),
        }


class _DatalabIssue(IssueType):
    """Runs one cleanlab Datalab issue manager on the shared kNN graph."""

    needs = ("features",)

    def __init__(self, **params: Any) -> None:
        self.params = params

    def _run(self, ctx: IssueContext):
        from cleanlab import Datalab

        graph = ctx.knn_graph
        k = graph.nnz // graph.shape[0]
        lab = Datalab(data={"row": np.arange(graph.shape[0])}, verbosity=0)
        params = {"k": k, **self.params}
        lab.find_issues(knn_graph=graph, issue_types={self.issue_name: params})
        return lab


class OutlierIssue(_DatalabIssue):
    """Atypical embedding: large mean distance to its k neighbours (Datalab ``outlier``)."""

    issue_name = "outlier"
    columns: ClassVar[dict[str, Any]] = {"is_outlier": pl.Boolean, "outlier_score": pl.Float64}

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        issues = self._run(ctx).get_issues("outlier")
        return {
            "is_outlier": issues["is_outlier_issue"].to_numpy(),
            "outlier_score": issues["outlier_score"].to_numpy(),
        }


class NearDuplicateIssue(_DatalabIssue):
    """(Near-)identical embeddings (Datalab ``near_duplicate``).

    ``near_duplicate_set`` is the row number (in this table) of the first
    member of the example's connected set of near-duplicates; null if none.
    """

    issue_name = "near_duplicate"
    columns: ClassVar[dict[str, Any]] = {
        "is_near_duplicate": pl.Boolean,
        "near_duplicate_score": pl.Float64,
        "near_duplicate_set": pl.Int64,
    }

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        lab = self._run(ctx)
        issues = lab.get_issues("near_duplicate")
        sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
        n = len(sets)
        rows = np.repeat(np.arange(n), [len(s) for s in sets])
        cols = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sets])
            if n
            else np.array([], int)
        )
        _, comp = connected_components(
            coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False
        )
        first = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(first, comp, np.arange(n))
        size = np.bincount(comp) if n else np.array([], int)
        set_id = np.where(size[comp] > 1, first[comp], -1) if n else np.array([], int)
        return {
            "is_near_duplicate": issues["is_near_duplicate_issue"].to_numpy(),
            "near_duplicate_score": issues["near_duplicate_score"].to_numpy(),
            "near_duplicate_set": [int(s) if s >= 0 else None for s in set_id],
        }


def _ratio_score(margin: np.ndarray, threshold: float) -> np.ndarray:
    """Map ``margin >= 0`` to 0..1 with 0.5 exactly at ``threshold`` (lower = worse)."""
    margin = np.clip(margin, 0.0, None)
    return margin / (margin + max(threshold, 1e-9))


def camera_stats(
    values: np.ndarray, cameras: np.ndarray, *, min_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each frame's camera median and robust spread of ``values``.

    Parameters
    ----------
    values : np.ndarray of shape (N,), float
        A per-frame statistic (NaN where unknown; NaNs are ignored).
    cameras : np.ndarray of shape (N,)
        Camera of each frame.
    min_frames : int
        Cameras with fewer finite values are marked not ``enough``.

    Returns
    -------
    median : np.ndarray of shape (N,), float
        Median of the frame's camera.
    scale : np.ndarray of shape (N,), float
        1.4826 x the median absolute deviation of the frame's camera (the standard deviation
        of a normal distribution; robust to the outliers being looked for).
    enough : np.ndarray of shape (N,), bool
        The camera has at least ``min_frames`` finite values.
    """
    median = np.full(len(values), np.nan)
    scale = np.full(len(values), np.nan)
    enough = np.zeros(len(values), bool)
    cams = np.asarray(cameras).astype(str)
    for cam in np.unique(cams):
        rows = cams == cam
        finite = values[rows][np.isfinite(values[rows])]
        if not len(finite):
            continue
        med = float(np.median(finite))
        median[rows] = med
        scale[rows] = 1.4826 * float(np.median(np.abs(finite - med)))
        enough[rows] = len(finite) >= min_frames
    return median, scale, enough


def _z_score(z: np.ndarray, z_threshold: float) -> np.ndarray:
    """0..1 from a robust z-score (lower = worse): 0.5 at ``-z_threshold``, 2/3 at the median."""
    return _ratio_score(z + 2 * z_threshold, z_threshold)


class _CameraRelative(IssueType):
    """Judges a frame against the frames of its own camera (robust z-score).

    A frame is flagged when its robust z-score ``(x - camera median) / max(1.4826 MAD,
    min_scale)`` is beyond ``z_threshold`` *and* it differs from the camera median by a
    material amount (``min_change``), so a camera whose every frame is dark (bright parts on
    black, back-lit or X-ray inspection) keeps its frames, while a frame much darker than its
    camera's usual is flagged. Cameras with fewer than ``min_frames`` frames (whose normal
    cannot be estimated) fall back to the absolute ``threshold``.
    """

    needs = ("brightness",)
    stat = "brightness"

    def __init__(
        self,
        *,
        threshold: float | None = None,
        z_threshold: float = 3.5,
        min_change: float = 0.3,
        min_scale: float = 2.0,
        min_frames: int = 10,
    ) -> None:
        self.threshold = self.default_threshold if threshold is None else threshold
        self.z_threshold, self.min_change = z_threshold, min_change
        self.min_scale, self.min_frames = min_scale, min_frames

    default_threshold: ClassVar[float]

    def _inputs(self, ctx: IssueContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(values (N,), camera median (N,), robust z (N,), camera has enough frames (N,))."""
        x = ctx.quality[self.stat].cast(pl.Float64).fill_null(np.nan).to_numpy()
        med, scale, enough = camera_stats(x, ctx.cameras, min_frames=self.min_frames)
        z = (x - med) / np.maximum(np.nan_to_num(scale), self.min_scale)
        return x, med, z, enough


class DarkIssue(_CameraRelative):
    """Underexposed frame: much darker than its camera's usual ``brightness`` (0..255 mean gray).

    Flagged when the robust z-score of brightness against the frame's camera is below
    ``-z_threshold`` and the brightness is at least ``min_change`` (30%) below the camera's
    median; see :class:`_CameraRelative`. ``threshold`` (absolute, default 40) applies to
    cameras with fewer than ``min_frames`` frames. ``dark_score`` is 0.5 at the z threshold.
    """

    issue_name = "dark"
    default_threshold = DARK_BRIGHTNESS
    columns: ClassVar[dict[str, Any]] = {"is_dark": pl.Boolean, "dark_score": pl.Float64}

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        b, med, z, enough = self._inputs(ctx)
        relative = (z < -self.z_threshold) & (b < (1.0 - self.min_change) * med)
        flag = np.where(enough, relative, b < self.threshold)
        score = np.where(enough, _z_score(z, self.z_threshold), _ratio_score(b, self.threshold))
        return {"is_dark": np.where(np.isnan(b), None, flag), "dark_score": score}


class OverexposedIssue(_CameraRelative):
    """Washed-out frame (glare): much brighter than its camera's usual ``brightness``.

    Flagged when the robust z-score is above ``z_threshold`` and the headroom ``255 -
    brightness`` is at least ``min_change`` (30%) below the camera's median headroom; cameras
    with fewer than ``min_frames`` frames use the absolute ``threshold`` (default 235).
    """

    issue_name = "overexposed"
    default_threshold = OVEREXPOSED_BRIGHTNESS
    columns: ClassVar[dict[str, Any]] = {
        "is_overexposed": pl.Boolean,
        "overexposed_score": pl.Float64,
    }

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        b, med, z, enough = self._inputs(ctx)
        relative = (z > self.z_threshold) & (255.0 - b < (1.0 - self.min_change) * (255.0 - med))
        flag = np.where(enough, relative, b > self.threshold)
        score = np.where(
            enough,
            _z_score(-z, self.z_threshold),
            _ratio_score(255.0 - b, 255.0 - self.threshold),
        )
        return {"is_overexposed": np.where(np.isnan(b), None, flag), "overexposed_score": score}


class BlurryIssue(_CameraRelative):
    """Out-of-focus or motion-blurred frame: low variance of the Laplacian for its camera.

    Sharpness depends on resolution and scene (a black background has little texture), so a
    frame is judged against its camera: flagged when the robust z-score of ``log1p(sharpness)``
    is below ``-z_threshold`` and the sharpness is below ``relative`` x the camera's median.
    Cameras with fewer than ``min_frames`` frames use ``threshold`` when given, else
    ``relative`` x the median of every frame checked together.
    """

    issue_name = "blurry"
    needs = ("sharpness",)
    stat = "sharpness"
    default_threshold = float("nan")
    columns: ClassVar[dict[str, Any]] = {"is_blurry": pl.Boolean, "blurry_score": pl.Float64}

    def __init__(
        self,
        *,
        threshold: float | None = None,
        relative: float = BLURRY_RELATIVE,
        z_threshold: float = 3.5,
        min_scale: float = 0.1,
        min_frames: int = 10,
    ) -> None:
        super().__init__(
            threshold=threshold,
            z_threshold=z_threshold,
            min_change=1.0 - relative,
            min_scale=min_scale,
            min_frames=min_frames,
        )
        self.relative = relative

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        s = ctx.quality["sharpness"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        log_s = np.log1p(np.clip(s, 0.0, None))
        med_log, scale, enough = camera_stats(log_s, ctx.cameras, min_frames=self.min_frames)
        z = (log_s - med_log) / np.maximum(np.nan_to_num(scale), self.min_scale)
        camera_median = np.expm1(med_log)
        relative = (z < -self.z_threshold) & (s < self.relative * camera_median)
        thr = self.threshold
        if np.isnan(thr):
            finite = s[np.isfinite(s)]
            thr = self.relative * float(np.median(finite)) if len(finite) else 0.0
        flag = np.where(enough, relative, s < thr)
        score = np.where(enough, _z_score(z, self.z_threshold), _ratio_score(s, thr))
        return {"is_blurry": np.where(np.isnan(s), None, flag), "blurry_score": score}


REGISTRY: dict[str, type[IssueType]] = {
    cls.issue_name: cls
    for cls in (
        LabelIssue,
        OutlierIssue,
        NearDuplicateIssue,
        DarkIssue,
        OverexposedIssue,
        BlurryIssue,
    )
}
"""Every issue type by its stable ``issue_name``; :func:`find_label_issues` runs them in this order."""


# --------------------------------------------------------------- the table ---


def find_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    keys: pl.DataFrame,
    features: np.ndarray | None = None,
    quality: pl.DataFrame | None = None,
    classes: Sequence[str] | None = None,
    issue_types: Sequence[str] | None = None,
    issue_params: Mapping[str, Mapping[str, Any]] | None = None,
    knn_graph: csr_matrix | None = None,
    knn_k: int = 10,
) -> pl.DataFrame:
    """Build the ``label_issues`` table: one row per labelled frame, all issue types.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
        Given labels (e.g. consensus labels) in ``0 .. K-1``.
    pred_probs : np.ndarray of shape (N, K)
        Out-of-sample predicted probabilities (:func:`training.crossval.cross_val_predict`).
    keys : pl.DataFrame of shape (N, 2+)
        ``video_id``, ``frame_index`` of each row.
    features : np.ndarray of shape (N, D), optional
        Embeddings; enables ``outlier`` and ``near_duplicate``.
    quality : pl.DataFrame, optional
        Per-frame ``video_id``, ``frame_index``, ``brightness`` (0..255 mean
        gray) and/or ``sharpness`` (variance of Laplacian) and optionally
        ``camera_id``, e.g. the ``frames`` table; enables ``dark``,
        ``overexposed``, ``blurry``, which judge each frame against the
        frames of its camera (all frames as one camera without ``camera_id``).
    classes : sequence of str, optional
        Class names for ``given_label`` / ``suggested_label`` (default ``"0"``, ``"1"``...).
    issue_types : sequence of str, optional
        Names from :data:`REGISTRY` to run (default all); the rest get null columns.
    issue_params : mapping, optional
        Keyword options per issue type, e.g. ``{"dark": {"threshold": 30}}``;
        Datalab types take their issue-manager options (``{"near_duplicate": {"threshold": 0.1}}``).
    knn_graph : scipy.sparse.csr_matrix of shape (N, N), optional
        Precomputed neighbour graph in cleanlab's format (e.g. from an ANN
        index for very large N); default :func:`cosine_knn_graph` of ``features``.
    knn_k : int
        Neighbours for the default graph.

    Returns
    -------
    pl.DataFrame
        Rows in the order of ``keys``. Columns ``video_id``, ``frame_index``,
        ``given_label``, ``suggested_label``, ``label_quality``,
        ``is_label_issue``, ``suggested_confidence``, then per issue type
        ``is_<name>`` / ``<name>_score`` (and ``near_duplicate_set``) for
        outlier, near_duplicate, dark, overexposed, blurry. Flags are null
        where the issue type could not run.
    """
    y = np.asarray(labels).astype(np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    n = len(y)
    if p.shape[0] != n or keys.height != n:
        raise ValueError(
            f"labels ({n}), pred_probs ({p.shape[0]}) and keys ({keys.height}) differ in length"
        )
    names = (
        [str(c) for c in classes] if classes is not None else [str(i) for i in range(p.shape[1])]
    )
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} classes but pred_probs has {p.shape[1]} columns")
    feats = None if features is None else np.asarray(features, dtype=np.float32)
    if feats is not None and len(feats) != n:
        raise ValueError("features and labels differ in length")
    aligned = None
    if quality is not None:
        cols = [c for c in ("brightness", "sharpness", "camera_id") if c in quality.columns]
        aligned = keys.select(_KEYS).join(
            quality.select(*_KEYS, *cols).unique(subset=_KEYS, keep="first"),
            on=_KEYS,
            how="left",
            maintain_order="left",
        )
    ctx = IssueContext(y, p, feats, aligned, knn_graph, knn_k)
    wanted = list(REGISTRY) if issue_types is None else list(issue_types)
    unknown = set(wanted) - set(REGISTRY)
    if unknown:
        raise ValueError(f"unknown issue types {sorted(unknown)}; known: {list(REGISTRY)}")

    out = keys.select(_KEYS).with_columns(
        given_label=pl.Series([names[i] for i in y], dtype=pl.String),
        suggested_label=pl.Series([names[i] for i in p.argmax(axis=1)], dtype=pl.String),
    )
    for name, cls in REGISTRY.items():
        values: dict[str, Any] = {}
        if name in wanted and all(ctx.has(need) for need in cls.needs) and n:
            values = cls(**dict((issue_params or {}).get(name, {}))).find(ctx)
        out = out.with_columns(
            [
                _series(col, values[col], dtype)
                if col in values
                else pl.lit(None, dtype).alias(col)
                for col, dtype in cls.columns.items()
                if col not in out.columns
            ]
        )
    return out


def _series(name: str, values: Any, dtype: Any) -> pl.Series:
    """Column from numpy/list values; NaN floats and None flags become null."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()
    series = pl.Series(name, values, dtype=dtype, strict=False)
    return series.fill_nan(None) if dtype == pl.Float64 else series


def issue_counts(df: pl.DataFrame) -> dict[str, int]:
    """Number of flagged rows per issue type: ``{"label": 12, "outlier": 3, ...}``.

    Counts every boolean ``is_*`` column (nulls count as not flagged); the key
    drops the ``is_`` prefix and an ``_issue`` suffix.
    """
    counts = {}
    for col, dtype in df.schema.items():
        if col.startswith("is_") and dtype == pl.Boolean:
            name = col[3:].removesuffix("_issue")
            counts[name] = int(df[col].fill_null(False).sum())
    return counts


def worst_examples_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], *, ncols: int = 6
) -> bytes:
    """Render thumbnails with captions into one PNG (for asset metadata).

    Parameters
    ----------
    images : sequence of np.ndarray, each (H, W, 3) uint8 (or (H, W) gray)
    captions : sequence of str, same length (e.g. ``"cam1/12 good->defect q=0.03"``)
    ncols : int
        Thumbnails per row.

    Returns
    -------
    bytes
        PNG file contents; a small "no examples" image when ``images`` is empty.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(images) != len(captions):
        raise ValueError("images and captions differ in length")
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(2.2 * ncols, 2.4 * nrows))
    FigureCanvasAgg(fig)
    if not n:
        fig.text(0.5, 0.5, "no examples", ha="center", va="center")
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        arr = np.asarray(img)
        if arr.ndim not in (2, 3):
            raise ValueError(f"image {i} has shape {arr.shape}; expected (H, W, 3) or (H, W)")
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7, wrap=True)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()
