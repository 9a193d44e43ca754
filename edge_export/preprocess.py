"""The preprocessing contract: what every consumer does to a frame before the model sees it.

One typed spec, :class:`PreprocessSpec`, is used by embeddings, training, evaluation, export
and the edge runner, and is recorded once in every checkpoint (``preprocess`` metadata) and
every edge bundle (``preprocess.json``). A frame goes through exactly these steps:

1. decode to BGR uint8 (OpenCV's order; PyAV frames are asked for ``bgr24``);
   **source pixels**: models are trained on the lake's sampled frames, which ingestion stores
   as JPEG (``jpeg_quality``, 90 by default). A consumer that decodes video itself (the edge
   runner) first puts each raw frame through the same JPEG round trip (:meth:`PreprocessSpec.source`),
   so the model sees the pixels it was trained on; ``jpeg_quality=None`` records a model
   trained on raw decoded frames (no round trip). Image files are taken as stored;
2. **crop** by the camera's :class:`Crop` policy:

   - ``item``: a ``side`` x ``side`` square centred on the inspected item
     (:func:`locate_item`, a bright, unsaturated, compact blob), shifted to stay inside;
   - ``fixed``: the box ``(x, y, w, h)`` in source pixels (a camera that does not move);
   - ``full``: the whole frame;
3. resize to ``image_size`` x ``image_size`` with ``cv2.INTER_AREA``;
4. BGR -> RGB: uint8 (S, S, 3), the array training and evaluation store in memory;
5. :meth:`PreprocessSpec.normalize`: NCHW float32, ``x * float32(1/255)``, then
   ``(x - mean) / std`` per channel, all in float32.

This module needs only numpy and OpenCV (no torch, no Dagster, no polars): it lives in
``edge_export`` so the standalone edge runner imports it as is, and ``training.preprocess``
re-exports it for the bench. ``training.data`` runs step 5 in torch with the same float32
operations and the spec's ``mean``/``std``, and a test proves both give the same bits.

Serialised as ``lensline.preprocess/2`` (adds ``jpeg_quality``); ``/1`` specs (checkpoints and
bundles from before) still load, with ``jpeg_quality=90``: every model trained until then saw
the lake's quality-90 JPEGs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "FORMAT",
    "LAKE_JPEG_QUALITY",
    "MEAN",
    "STD",
    "Crop",
    "PreprocessSpec",
    "PreprocessError",
    "locate_item",
    "decode_image",
]

FORMAT = "lensline.preprocess/2"
READS = ("lensline.preprocess/1", FORMAT)  # /1: before jpeg_quality (trained on q90 JPEGs)
#: The JPEG quality ingestion stores sampled frames at (``frame_images``), hence what a model
#: trained on the lake sees unless its spec says otherwise.
LAKE_JPEG_QUALITY = 90
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CropPolicy = Literal["item", "fixed", "full"]


class PreprocessError(ValueError):
    """A preprocessing spec or an input image is unusable."""


@dataclass(frozen=True)
class Crop:
    """How one camera's frames are cropped before resizing.

    Parameters
    ----------
    policy
        ``item`` (square around the located item), ``fixed`` (``box``), ``full`` (whole frame).
    side
        ``item`` only: square side in source pixels (clipped to the frame).
    box
        ``fixed`` only: ``(x, y, w, h)`` in source pixels; must lie inside the frame.
    """

    policy: CropPolicy = "item"
    side: int = 112
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("item", "fixed", "full"):
            raise PreprocessError(f"crop policy must be item, fixed or full, got {self.policy!r}")
        if self.policy == "item" and self.side < 8:
            raise PreprocessError(f"item crop side must be >= 8 pixels, got {self.side}")
        if self.policy == "fixed":
            if self.box is None or len(self.box) != 4:
                raise PreprocessError("a fixed crop needs box=(x, y, w, h)")
            x, y, w, h = (int(v) for v in self.box)
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise PreprocessError(f"fixed crop box {self.box} must be x, y >= 0 and w, h >= 1")
            object.__setattr__(self, "box", (x, y, w, h))

    @classmethod
    def parse(cls, text: str) -> Crop:
        """``"item"``, ``"item:96"``, ``"full"`` or ``"fixed:x,y,w,h"`` (config-friendly form)."""
        policy, _, arg = text.strip().partition(":")
        try:
            if policy == "item":
                return cls("item", side=int(arg) if arg else 112)
            if policy == "fixed":
                x, y, w, h = (int(v) for v in arg.split(","))
                return cls("fixed", box=(x, y, w, h))
            if policy == "full" and not arg:
                return cls("full")
        except ValueError as e:
            raise PreprocessError(f"bad crop {text!r}: {e}") from e
        raise PreprocessError(f"bad crop {text!r}: use item[:side], fixed:x,y,w,h or full")

    def apply(self, bgr: np.ndarray) -> np.ndarray:
        """The crop of ``bgr`` (H, W, 3) uint8: a view, not a copy."""
        h, w = bgr.shape[:2]
        if self.policy == "full":
            return bgr
        if self.policy == "fixed":
            assert self.box is not None
            x, y, bw, bh = self.box
            if x + bw > w or y + bh > h:
                raise PreprocessError(f"fixed crop box {self.box} does not fit in a {w}x{h} frame")
            return bgr[y : y + bh, x : x + bw]
        side = min(self.side, h, w)
        cx, cy = locate_item(bgr)
        x0 = int(np.clip(round(cx - side / 2), 0, w - side))
        y0 = int(np.clip(round(cy - side / 2), 0, h - side))
        return bgr[y0 : y0 + side, x0 : x0 + side]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy}
        if self.policy == "item":
            out["side"] = self.side
        if self.policy == "fixed":
            out["box"] = list(self.box or ())
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Crop:
        box = d.get("box")
        return cls(d["policy"], side=int(d.get("side", 112)), box=tuple(box) if box else None)


@dataclass(frozen=True)
class PreprocessSpec:
    """Frame -> model input, identical everywhere (see the module docstring for the steps).

    Parameters
    ----------
    image_size
        Side S of the square model input.
    crop
        Default crop for every camera.
    cameras
        Per-camera overrides, ``camera_id -> Crop``.
    mean, std
        Per-channel normalisation, RGB order, applied after scaling to [0, 1].
    jpeg_quality
        The source pixels: the model was trained on frames JPEG-encoded at this quality (the
        lake's sampled frames, :data:`LAKE_JPEG_QUALITY`), so a raw decoded frame goes through
        the same round trip first (:meth:`source`); ``None``: trained on raw decoded frames.
    """

    image_size: int = 64
    crop: Crop = field(default_factory=Crop)
    cameras: Mapping[str, Crop] = field(default_factory=dict)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    interpolation: Literal["area"] = "area"
    jpeg_quality: int | None = LAKE_JPEG_QUALITY

    def __post_init__(self) -> None:
        if not 8 <= int(self.image_size) <= 1024:
            raise PreprocessError(f"image_size must be in [8, 1024], got {self.image_size}")
        if self.jpeg_quality is not None and not 1 <= int(self.jpeg_quality) <= 100:
            raise PreprocessError(
                f"jpeg_quality must be in [1, 100] or None, got {self.jpeg_quality}"
            )

    # -- per frame -------------------------------------------------------------------------
    def crop_for(self, camera_id: str | None) -> Crop:
        """The crop policy of ``camera_id`` (the default when it has no override)."""
        return self.cameras.get(camera_id, self.crop) if camera_id is not None else self.crop

    def source(self, bgr: np.ndarray) -> np.ndarray:
        """A raw decoded BGR uint8 frame (H, W, 3) -> the pixels the model was trained on.

        With ``jpeg_quality`` set, the frame is JPEG-encoded at that quality and decoded again
        (what ingestion does to the frames training reads); with ``None`` it is returned as is.
        For frames decoded from video; image files are already stored pixels.
        """
        if self.jpeg_quality is None:
            return bgr
        import cv2

        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
        if not ok:
            raise PreprocessError(f"JPEG encoding failed for a frame of shape {bgr.shape}")
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if out is None:
            raise PreprocessError(f"JPEG decoding failed for a frame of shape {bgr.shape}")
        return out

    def image(self, bgr: np.ndarray, camera_id: str | None = None) -> np.ndarray:
        """One BGR uint8 frame (H, W, 3) -> the model's RGB uint8 image (S, S, 3)."""
        import cv2

        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise PreprocessError(
                f"expected a BGR uint8 (H, W, 3) frame, got {bgr.dtype} {bgr.shape}"
            )
        crop = self.crop_for(camera_id).apply(bgr)
        s = self.image_size
        small = cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)

    def images(
        self,
        sources: Sequence[str | os.PathLike | bytes | np.ndarray],
        camera_ids: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Many frames -> RGB uint8 (N, S, S, 3).

        ``sources`` are image files, encoded image bytes or BGR uint8 arrays; ``camera_ids``
        (one per source) choose each frame's crop.
        """
        s = self.image_size
        out = np.empty((len(sources), s, s, 3), np.uint8)
        cams = list(camera_ids) if camera_ids is not None else [None] * len(sources)
        if len(cams) != len(sources):
            raise PreprocessError(f"{len(sources)} images but {len(cams)} camera ids")
        for i, (src, cam) in enumerate(zip(sources, cams, strict=True)):
            bgr = src if isinstance(src, np.ndarray) else decode_image(src, index=i)
            out[i] = self.image(bgr, cam)
        return out

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """RGB uint8 (N, S, S, 3) -> float32 (N, 3, S, S): ``(x * (1/255) - mean) / std``."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise PreprocessError(
                f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}"
            )
        x = images.transpose(0, 3, 1, 2).astype(np.float32)
        x *= np.float32(1 / 255)
        x -= np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        x /= np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return x

    def tensor(
        self,
        sources: Sequence[str | os.PathLike | bytes | np.ndarray],
        camera_ids: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Frames -> the model's float32 input (N, 3, S, S): :meth:`images` then :meth:`normalize`."""
        return self.normalize(self.images(sources, camera_ids))

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"] = self.crop.to_dict()
        d["cameras"] = {k: v.to_dict() for k, v in sorted(self.cameras.items())}
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {"format": FORMAT, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessSpec:
        if d.get("format") not in READS:
            raise PreprocessError(
                f"unknown preprocessing format {d.get('format')!r} "
                f"(this code reads {', '.join(READS)})"
            )
        quality = d.get("jpeg_quality", LAKE_JPEG_QUALITY)
        try:
            return cls(
                image_size=int(d["image_size"]),
                crop=Crop.from_dict(d["crop"]),
                cameras={k: Crop.from_dict(v) for k, v in (d.get("cameras") or {}).items()},
                mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                channel_order=d.get("channel_order", "RGB"),
                layout=d.get("layout", "NCHW"),
                interpolation=d.get("interpolation", "area"),
                jpeg_quality=None if quality is None else int(quality),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PreprocessError(f"unusable preprocessing spec ({e!r})") from e

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise PreprocessError(f"preprocessing spec is not JSON ({e})") from e


def decode_image(src: str | os.PathLike | bytes, *, index: int = 0) -> np.ndarray:
    """An image file or encoded bytes -> BGR uint8 (H, W, 3); a clear error when it won't decode."""
    import cv2

    raw = src if isinstance(src, bytes) else np.fromfile(os.fspath(src), dtype=np.uint8)
    bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        name = f"<bytes #{index}>" if isinstance(src, bytes) else os.fspath(src)
        raise PreprocessError(f"cannot decode image {name}")
    return bgr


def percentile_u8(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation, the same float) for uint8 ``values``
    of any shape, from a 256-bin histogram instead of a sort: ~4x faster on a 640x360 channel,
    the cost that held the serve loop's preprocessing (locate_item) on the GIL."""
    return percentile_from_counts(np.bincount(values.ravel(), minlength=256), q)


def percentile_from_counts(counts: np.ndarray, q: float) -> float:
    """:func:`percentile_u8` from the 256 value counts (``np.bincount`` or ``cv2.calcHist``)."""
    cum = np.cumsum(counts)
    pos = q / 100.0 * (int(cum[-1]) - 1)
    lo = int(np.floor(pos))
    hi, t = min(lo + 1, int(cum[-1]) - 1), pos - lo
    a = float(np.searchsorted(cum, lo, side="right"))  # the lo-th smallest value
    b = float(np.searchsorted(cum, hi, side="right"))
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's lerp, bit for bit


def locate_item(bgr: np.ndarray) -> tuple[float, float]:
    """Centre (x, y) of the inspected item: the largest bright, unsaturated, compact blob.

    Parameters
    ----------
    bgr
        Shape (H, W, 3), uint8, BGR.

    Rails (long bands touching both sides), gloves (saturated) and specks are ignored; with no
    candidate the frame centre is returned.
    """
    import cv2

    h, w = bgr.shape[:2]
    hsv = cv2.cvtColor(cv2.GaussianBlur(bgr, (7, 7), 0), cv2.COLOR_BGR2HSV)
    # OpenCV for the histogram and the mask (they release the GIL: the serve loop runs this on
    # a thread pool beside the cameras' decoders); the same values as numpy's percentile and
    # ``(value > thresh) & (sat < 90)``: V > t for integer V is V >= floor(t) + 1, as 0/255.
    hist = cv2.calcHist([hsv], [2], None, [256], [0, 256]).ravel().astype(np.int64)
    thresh = max(percentile_from_counts(hist, 75), 60.0)
    low = min(int(np.floor(thresh)) + 1, 256)
    raw = cv2.inRange(hsv, (0, 0, low), (255, 89, 255))
    opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, _, stats, centroids = cv2.connectedComponentsWithStats(closed)
    best, best_area = None, 0.002 * h * w
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if bw > 0.6 * w or bh > 0.8 * h or max(bw, bh) > 3.0 * max(1, min(bw, bh)):
            continue  # rails, belt edges, glare streaks
        if area > best_area:
            best, best_area = i, area
    if best is None:
        return w / 2.0, h / 2.0
    return float(centroids[best][0]), float(centroids[best][1])
