"""Compact per-frame statistics of a set of frames: a camera's drift reference or a new video.

A :class:`CameraReference` holds only what the drift tests need (a few kilobytes to a few
megabytes), so it is computed once from the frames behind the champion's dataset and
stored as one ``.npz`` file; each new video is summarised the same way and compared to it.

Frames must be given in temporal order; ``segments`` says which frames come from the same
video, so that the blocks of consecutive frames the tests use never straddle two videos.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from data_quality.drift.stats import block_ids
from data_quality.frame_quality import frame_stats

__all__ = [
    "COLOUR_BINS",
    "FORMAT",
    "FRAME_STATS",
    "CameraReference",
    "build_reference",
    "colour_histogram",
    "median_background",
]

FORMAT = "lensline.drift_reference/1"
"""Format tag stored in every serialised reference; bumped on incompatible changes."""

FRAME_STATS: tuple[str, ...] = ("brightness", "contrast", "sharpness")
"""Columns of :attr:`CameraReference.stats`, as computed by ``frame_quality.frame_stats``."""

COLOUR_BINS = 8
"""Bins per HSV channel in :func:`colour_histogram`."""

_CHROMA_S = 64  # saturation (0..255) from which a pixel has a meaningful hue
_CHROMA_V = 50  # value (0..255) from which a pixel has a meaningful hue
_MAX_BACKGROUND_FRAMES = 101


def colour_histogram(image: np.ndarray, *, bins: int = COLOUR_BINS) -> np.ndarray:
    """HSV colour histogram of one frame: hue of chromatic pixels, saturation, value.

    Hue is undefined for grey pixels (the belt, the parts), so the hue bins count only
    chromatic pixels (saturation >= 64 and value >= 50 on OpenCV's 0..255 scale): they are
    the fraction of the *whole image* showing that hue, and sum to the chromatic share.
    Saturation and value bins count all pixels and each sum to 1.

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8, BGR.
    bins : int
        Bins per channel.

    Returns
    -------
    np.ndarray
        float32 (3 * bins,): hue bins, then saturation bins, then value bins.
    """
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    n = float(hsv.shape[0] * hsv.shape[1])
    chroma = ((hsv[..., 1] >= _CHROMA_S) & (hsv[..., 2] >= _CHROMA_V)).astype(np.uint8)
    hue = cv2.calcHist([hsv], [0], chroma, [bins], [0, 180]).ravel()
    sat = cv2.calcHist([hsv], [1], None, [bins], [0, 256]).ravel()
    val = cv2.calcHist([hsv], [2], None, [bins], [0, 256]).ravel()
    return (np.concatenate([hue, sat, val]) / n).astype(np.float32)


def median_background(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Static scene of a camera: the per-pixel median of (up to 101 evenly spaced) grey frames.

    Moving items, the belt texture and hands average out; rails, bolts and belt edges stay.

    Parameters
    ----------
    images : sequence of np.ndarray
        (H, W, 3) uint8 BGR frames, all the same size.

    Returns
    -------
    np.ndarray
        (H, W) uint8 grey image.
    """
    import cv2

    if len(images) == 0:
        raise ValueError("no frames for a background")
    pick = np.unique(np.linspace(0, len(images) - 1, _MAX_BACKGROUND_FRAMES).round().astype(int))
    stack = np.stack([cv2.cvtColor(images[i], cv2.COLOR_BGR2GRAY) for i in pick])
    # np.median's result truncated to uint8, without its float64 copy and full sort: a partial
    # partition of the uint8 stack, frames contiguous per pixel (1.7x faster on 101 720p frames)
    n, shape = len(stack), stack.shape[1:]
    flat = np.ascontiguousarray(stack.reshape(n, -1).T)
    if n % 2:
        return np.partition(flat, n // 2, axis=1)[:, n // 2].reshape(shape)
    part = np.partition(flat, (n // 2 - 1, n // 2), axis=1)
    mid = (part[:, n // 2 - 1].astype(np.uint16) + part[:, n // 2]) // 2
    return mid.astype(np.uint8).reshape(shape)


@dataclass
class CameraReference:
    """Compact statistics of frames of one camera (a reference, or one new video).

    Attributes
    ----------
    camera_id : str
        The camera.
    version : str
        Reference version (e.g. the champion's dataset version) or the video id.
    segment : np.ndarray
        int32 (N,): which video each frame came from; frames in temporal order within one.
    stats : np.ndarray
        float32 (N, 3): ``FRAME_STATS`` per frame.
    colour : np.ndarray or None
        float32 (N, 3 * COLOUR_BINS): :func:`colour_histogram` per frame; None without images.
    background : np.ndarray or None
        uint8 (H, W): :func:`median_background`; None without images or with mixed sizes.
    embeddings : np.ndarray or None
        float32 (M, D): embeddings of whole runs of consecutive frames, M <= max_embeddings.
    embedding_segment : np.ndarray or None
        int32 (M,): run id of each embedding row (consecutive rows of one run are
        consecutive frames).
    probs : np.ndarray or None
        float32 (N, K): the champion's softmax probabilities per frame.
    meta : dict
        JSON-serialisable extras (e.g. the source video ids).
    """

    camera_id: str
    version: str
    segment: np.ndarray
    stats: np.ndarray
    colour: np.ndarray | None = None
    background: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    embedding_segment: np.ndarray | None = None
    probs: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames summarised."""
        return int(len(self.stats))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (absent fields omitted) plus a JSON ``_meta`` string array."""
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = v
        head = {"format": FORMAT, "camera_id": self.camera_id, "version": self.version}
        out["_meta"] = np.array(json.dumps({**head, "meta": self.meta}))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CameraReference:
        """Inverse of :meth:`to_arrays`; raises ValueError on another format."""
        head = json.loads(str(arrays["_meta"]))
        if head.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} reference: {head.get('format')!r}")
        names = {f.name for f in fields(cls)} - {"camera_id", "version", "meta"}
        kw = {k: np.asarray(arrays[k]) for k in names if k in arrays}
        return cls(camera_id=head["camera_id"], version=head["version"], meta=head["meta"], **kw)

    def to_bytes(self) -> bytes:
        """Compressed ``.npz`` bytes (``np.load``-able, no pickle)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.to_arrays())  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CameraReference:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls.from_arrays({k: z[k] for k in z.files})


def build_reference(
    frames: Sequence[np.ndarray] | np.ndarray,
    embeddings: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    *,
    camera_id: str,
    version: str,
    segments: np.ndarray | Sequence | None = None,
    max_embeddings: int = 2000,
    run_length: int = 20,
    seed: int = 0,
    meta: dict | None = None,
) -> CameraReference:
    """Summarise frames of one camera for drift testing (a reference or a new video).

    Parameters
    ----------
    frames : sequence of np.ndarray, or np.ndarray
        Either N BGR uint8 images (H, W, 3) in temporal order, or float (N, 3) per-frame
        stats in ``FRAME_STATS`` order (e.g. the lake's ``frames`` columns); without images
        there is no colour histogram and no background (those tests report ``no_images``).
        Images are read once in order plus up to 101 again for the background, so a lazy
        sequence that decodes JPEGs in ``__getitem__`` keeps memory flat.
        Sample the reference and the new videos the same way (e.g. only the stride-sampled
        frames, not the extra frames kept because a label refers to them, which cluster
        around centred items): a different sampling reads as drift.
    embeddings : np.ndarray, optional
        float (N, D): the champion's embeddings of the same frames.
    probs : np.ndarray, optional
        float (N, K): the champion's softmax probabilities of the same frames.
    camera_id, version : str
        Stored as is.
    segments : array-like, optional
        (N,) video id (any hashable) per frame; all frames one video when omitted.
    max_embeddings : int
        Keep at most this many embedding rows, as random whole runs of ``run_length``
        consecutive frames (runs keep the autocorrelation the block tests account for).
    run_length : int
        Length of the runs kept when embeddings are subsampled.
    seed : int
        Seed of that subsample.
    meta : dict, optional
        JSON-serialisable extras.

    Returns
    -------
    CameraReference
    """
    images = len(frames) > 0 and np.ndim(frames[0]) == 3
    n = len(frames)
    seg = _segment_ids(segments, n)
    colour = background = None
    if images:
        stats = np.empty((n, len(FRAME_STATS)), np.float32)
        colour = np.empty((n, 3 * COLOUR_BINS), np.float32)
        shapes = set()
        for i, im in enumerate(frames):  # one pass: frames may be a lazy, decoding sequence
            st = frame_stats(im)
            stats[i] = [st[k] for k in FRAME_STATS]
            colour[i] = colour_histogram(im)
            shapes.add(im.shape)
        if len(shapes) == 1:
            background = median_background(frames)
    else:
        stats = np.asarray(frames, dtype=np.float32).reshape(n, len(FRAME_STATS))
    emb = emb_seg = None
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float32)
        if len(emb) != n:
            raise ValueError(f"embeddings have {len(emb)} rows for {n} frames")
        if n <= max_embeddings:
            emb_seg = seg.copy()
        else:
            keep = _runs(seg, run_length=run_length, limit=max_embeddings, seed=seed)
            emb, emb_seg = emb[keep], block_ids(seg, run_length)[keep].astype(np.int32)
    p = None
    if probs is not None:
        p = np.asarray(probs, dtype=np.float32)
        if len(p) != n:
            raise ValueError(f"probs have {len(p)} rows for {n} frames")
    return CameraReference(
        camera_id=camera_id,
        version=version,
        segment=seg,
        stats=stats,
        colour=colour,
        background=background,
        embeddings=emb,
        embedding_segment=emb_seg,
        probs=p,
        meta=dict(meta or {}),
    )


def _segment_ids(segments, n: int) -> np.ndarray:
    if segments is None:
        return np.zeros(n, np.int32)
    seg = list(segments)
    if len(seg) != n:
        raise ValueError(f"segments has {len(seg)} entries for {n} frames")
    codes: dict = {}
    return np.array([codes.setdefault(s, len(codes)) for s in seg], dtype=np.int32)


def _runs(seg: np.ndarray, *, run_length: int, limit: int, seed: int) -> np.ndarray:
    """Sorted frame indices of random whole runs, at most ``limit`` frames."""
    run = block_ids(seg, run_length)
    order = np.random.default_rng(seed).permutation(run.max() + 1)
    sizes = np.bincount(run)
    chosen = order[np.cumsum(sizes[order]) <= limit]
    return np.flatnonzero(np.isin(run, chosen))
