"""Out-of-sample predictions and embeddings from K-fold training of the edge CNN.

cleanlab needs predicted probabilities that no model saw the label of. Training the same small
CNN once per fold (folds grouped by video, so frames of one item never sit on both sides) gives,
for every frame, the probabilities *and* the penultimate embedding of the fold model that held it
out. With fewer than 2 videos (one long recording) the folds are contiguous time blocks of the
video instead (:func:`data_quality.splits.group_ids`), and each fold model leaves out of training
every frame within ``guard_frames`` of a held-out frame (near-duplicates never straddle a fold).

Both guard against near-duplicates, so they are measured first
(:func:`data_quality.splits.guard_near_share` on shift-invariant image features): when labelled
frames within ``guard_frames`` of each other are no more alike than frames far apart (independent
snapshots that merely share a video), the folds are drawn frame by frame (stratified), with no
guard. Holding out whole videos or time blocks there only hides whole stretches of conditions
from each fold model, whose held-out probabilities then flag correct labels (issue 7.13: on
digits in one video, label-issue precision 0.79 with time blocks, 0.90-0.92 by frame).

Each held-out probability is the mean softmax over the clean image and the views the training
augmentation draws most (test-time augmentation, :func:`tta_views`): whole-pixel shifts along each
axis and, when training mirrors, their mirror images. One fold model's softmax on one view is a
noisy estimate near the decision boundary, where cleanlab's thresholds cut; the average is
steadier (issue 7.13, 1797 digits at 64 px, 20 % flips, 5 folds, mean of 3 seeds: held-out
accuracy against the true labels 0.919 -> 0.931, label-issue F1 0.898 -> 0.920, better on every
seed; two models per fold instead, at twice the training cost: 0.914). The views come in the
order they are worth adding and ``n_views`` keeps the first few; all of a fold's views go
through the model in one batch (:func:`tta_predict`), which also yields the clean image's
embedding. Issue 15.3 (5,000 28x28 digits, ``benchmarks/label_checking_scale.py``): 6 views buy
nearly all of what 18 do (64 px, 5 folds: F1 0.950 / 0.957 / 0.958 with 1 / 6 / 18 views) for a
third of the inference.

What label checking costs is training: (k - 1) x N x epochs images, about four times more at
64 px than at 32. Frames smaller than the model input gain nothing from the upscaling, so the fold
models train at :func:`fold_side` (28 x 28 frames: 32 px). Cost is linear in N at fixed epochs;
``fold_images`` caps the images a fold model sees, so large label sets take fewer passes (at
least :data:`MIN_EPOCHS`). Issue 15.3, 5,000 28 x 28 digits, 20 % flips: 5 folds x 15 epochs buy
their cost (3 folds: F1 -0.022 at 64 px; 8 epochs: -0.013 to -0.028), and 32 px with 6 views
reaches F1 0.963 against 0.958 at 64 px with 18 views, in 43 % of the CPU time.

Those feed multi-annotator consensus (CROWDLAB), label issues and Datalab's outlier and
near-duplicate search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from data_quality.splits import group_ids, guard_near_share, near, shift_invariant_features
from training.train import TrainConfig

__all__ = [
    "MIN_EPOCHS",
    "NEAR_DUPLICATE_SHARE",
    "at_side",
    "cross_val_predict",
    "fold_side",
    "tta_predict",
    "tta_views",
]

NEAR_DUPLICATE_SHARE = 0.05
"""Above this share of near-duplicate pairs within the guard, frames are grouped (video / time block)."""

MIN_EPOCHS = 4
"""Fewest epochs a fold model trains for under ``fold_images`` (the cost is linear from there)."""


def cross_val_predict(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: Sequence[str],
    groups: np.ndarray,
    config: TrainConfig | None = None,
    n_folds: int = 3,
    progress: Callable[[str], None] | None = None,
    frame_indices: np.ndarray | None = None,
    guard_frames: int = 15,
    return_grouping: bool = False,
    near_duplicate_share: float = NEAR_DUPLICATE_SHARE,
    frame_folds: int | None = None,
    tta: bool = True,
    n_views: int | None = None,
    fold_images: int | None = None,
    image_size: int | None = None,
    return_models: bool = False,
) -> Any:
    """K-fold out-of-sample class probabilities and embeddings.

    Parameters
    ----------
    images
        uint8 (N, S, S, 3) RGB, S = ``config.image_size``.
    labels
        int (N,) class indices (e.g. the annotators' majority vote).
    classes
        K class names.
    groups
        (N,) video id per image: a video is never split across folds when there are at least
        2 videos; with one video, each fold is one contiguous time block of it (see
        :func:`data_quality.splits.group_ids`). Unless frames within ``guard_frames`` of each
        other are measured not to be near-duplicates: then folds are drawn frame by frame.
    config
        Training hyper-parameters for every fold (same seed in each fold).
    n_folds
        Folds; capped by the number of groups.
    progress
        Called with one line per fold.
    frame_indices
        int (N,) frame number of each image within its video (for time blocks and the guard);
        default: the image's position among its video's rows (pass it: rows of sampled
        frames are further apart than one frame, so the guard in rows is wider than needed).
    guard_frames
        With time blocks: frames within this many frames of a held-out frame (same video) are
        left out of that fold's training set.
    return_grouping
        Also return the grouping record (below).
    near_duplicate_share
        Fold frame by frame when :func:`data_quality.splits.guard_near_share` of the images is
        measurable and at most this; else group by video / time block as above. 1.0 always
        folds by frame when measurable, a negative value never.
    frame_folds
        Folds when folding frame by frame (default ``n_folds``): not capped by videos and
        without guard losses, so more folds there buy each fold model a larger share of the
        data (5 folds: 80 % instead of 67 %) at (k - 1) / 2 times the cost of 3.
    tta
        Average the held-out softmax over test-time views (:func:`tta_views`); False: the
        clean image alone.
    n_views
        At most this many views (the first of :func:`tta_views`); None: all of them.
    fold_images
        Training images a fold model sees over all its epochs, at most: its epochs are
        ``clip(ceil(fold_images / training frames), MIN_EPOCHS, config.epochs)``. Small sets
        keep ``config.epochs``; large ones take fewer passes over more frames, so the cost
        grows less than linearly until :data:`MIN_EPOCHS`, then linearly. None: always
        ``config.epochs``.
    image_size
        Train and score the fold models on the images resized to this side (``INTER_AREA``)
        when it is smaller than S, e.g. :func:`fold_side` (frames smaller than S hold no
        more detail at S); None: S.
    return_models
        Also return the fold models (:mod:`training.incremental` keeps them: frames of a new
        video are held out of every one of them).

    Returns
    -------
    probs : np.ndarray
        float32 (N, K), rows sum to 1, each row from the model that did not train on it.
    embeddings : np.ndarray
        float32 (N, D), penultimate features from the same held-out model.
    folds : np.ndarray
        int (N,), the fold that held each image out.
    grouping : dict, only with ``return_grouping``
        ``{"grouping": "video" | "time_block" | "frame", "blocks": n, "guard_frames": g,
        "guard_left_out": frames left out of training summed over folds, "near_share": the
        measured share (None when not measurable)}``.
    models : list, only with ``return_models``
        The k fold models (:class:`training.model.LenslineNet`, eval mode), fold order.

    Raises
    ------
    ValueError
        Fewer images than folds, or a guard so wide that a fold has nothing to train on.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from training.train import train_model

    config = config or TrainConfig()
    if image_size is not None and image_size < images.shape[1]:
        images = at_side(images, image_size)
        config = replace(config, image_size=image_size)
    videos = np.asarray(groups)
    frames = _positions(videos) if frame_indices is None else np.asarray(frame_indices, np.int64)
    share = None
    if guard_frames > 0 and near_duplicate_share >= 0:
        features = shift_invariant_features(images, videos)
        share = guard_near_share(features, videos, frames, guard=guard_frames, seed=config.seed)
    if share is not None and share <= near_duplicate_share:
        # no near-duplicates within the guard: nothing to keep apart, every fold sees it all
        fold_groups = np.arange(len(labels))
        grouping: dict[str, Any] = {"grouping": "frame", "blocks": len(labels), "guard_frames": 0}
        n_folds = frame_folds or n_folds
    else:
        # one contiguous block per fold: the fewest boundaries, so the least left out by the guard
        fold_groups, grouping = group_ids(
            videos, frames, min_groups=2, guard=guard_frames, n_blocks=n_folds
        )
    grouping["near_share"] = None if share is None else round(share, 4)
    k = min(n_folds, grouping["blocks"])
    # frame by frame: plain stratified folds (the grouped splitter loops over every group)
    kind = StratifiedKFold if grouping["grouping"] == "frame" else StratifiedGroupKFold
    splitter = kind(n_splits=k, shuffle=True, random_state=config.seed)
    views = tta_views(config, n_views) if tta else [(0, 0, False)]
    probs = np.zeros((len(labels), len(classes)), np.float32)
    embeddings: np.ndarray | None = None
    fold_of = np.full(len(labels), -1, np.int64)
    left_out = 0
    models: list[Any] = []
    for fold, (train, test) in enumerate(
        splitter.split(images, labels, None if kind is StratifiedKFold else fold_groups)
    ):
        held = np.zeros(len(labels), bool)
        held[test] = True
        purge = near(videos, frames, held, guard=grouping["guard_frames"])
        left_out += int(purge[train].sum())
        train = train[~purge[train]]
        if len(train) == 0:
            raise ValueError(
                f"fold {fold + 1}: every training frame lies within guard_frames={guard_frames} "
                "of a held-out frame; label more of the recording or lower guard_frames"
            )
        epochs = config.epochs
        if fold_images is not None:
            epochs = int(np.clip(math.ceil(fold_images / len(train)), MIN_EPOCHS, epochs))
        if progress:
            progress(
                f"fold {fold + 1}/{k}: train {len(train)} x {epochs} epochs, predict {len(test)}"
            )
        result = train_model(
            images[train],
            labels[train],
            classes=list(classes),
            config=replace(config, epochs=epochs),
        )
        models.append(result.model)
        probs[test], emb = tta_predict(result.model, images[test], views, config.num_threads)
        if embeddings is None:
            embeddings = np.zeros((len(labels), emb.shape[1]), np.float32)
        embeddings[test] = emb
        fold_of[test] = fold
    assert embeddings is not None
    out: tuple[Any, ...] = (probs, embeddings, fold_of)
    if return_grouping:
        out = (*out, {**grouping, "guard_left_out": left_out})
    return (*out, models) if return_models else out


def at_side(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, side, side, 3): ``images`` (N, S, S, 3) resized with ``INTER_AREA`` when
    ``side < S`` (as the fold models train), else themselves."""
    if side >= images.shape[1]:
        return images
    import cv2

    size = (side, side)
    return np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])


def fold_side(
    spec: Any, cameras: Sequence[str | None], widths: np.ndarray, heights: np.ndarray
) -> int:
    """The fold models' input side: ``spec.image_size``, or less where no frame's crop is larger.

    Label checking asks whether a frame looks like its label; upscaling a 28 x 28 frame to 64 px
    adds pixels, not detail, and costs four times the training of 32 px (issue 15.3: 5,000
    28 x 28 digits, F1 0.962 at 32 px against 0.958 at 64, in a quarter of the CPU time).

    Parameters
    ----------
    spec
        The :class:`training.preprocess.PreprocessSpec` that made the images.
    cameras
        (N,) camera of each frame (its crop policy), or None.
    widths, heights
        int (N,) source frame size in pixels.

    Returns
    -------
    int
        ``min(spec.image_size, 16 * ceil(m / 16))``, m the largest source extent any frame's
        crop spans (``item``: its side, clipped to the frame; ``fixed``: the box's larger side;
        ``full``: the frame's larger side); ``spec.image_size`` when there are no frames.
    """
    largest = 0
    for cam, w, h in zip(cameras, widths, heights, strict=True):
        crop = spec.crop_for(cam)
        if crop.policy == "item":
            extent = min(crop.side, int(w), int(h))
        elif crop.policy == "fixed":
            extent = max(crop.box[2], crop.box[3])
        else:
            extent = max(int(w), int(h))
        largest = max(largest, extent)
    if largest == 0:
        return int(spec.image_size)
    return int(min(spec.image_size, 16 * math.ceil(largest / 16)))


def tta_views(config: TrainConfig, n: int | None = None) -> list[tuple[int, int, bool]]:
    """Test-time views ``(dx, dy, mirror)`` that ``config``'s training augmentation draws.

    In the order they are worth adding: the clean image; its mirror when training mirrors
    (``hflip``); shifts of ``d`` whole pixels left, right, up and down for ``d`` in
    {max(1, D // 2), D}, D = floor(``translate`` * side) (the common range of the training's
    shifts; at most 2 distances whatever the size), the nearer first, each followed by its
    mirror images. No augmentation: the clean image alone. 64 px, defaults: 18 views; ``n``
    keeps the first ``n`` (6: clean, mirror, the four 1 px shifts).
    """
    aug = config.augment_config()
    if aug is None:
        return [(0, 0, False)]
    top = int(aug.translate * config.image_size)
    mirrors = (False, True) if aug.hflip else (False,)
    views = [(0, 0, m) for m in mirrors]
    for d in sorted({max(1, top // 2), top} if top >= 1 else set()):
        views += [(dx, dy, m) for m in mirrors for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d))]
    return views[: max(1, n)] if n is not None else views


def tta_predict(
    model: Any, images: np.ndarray, views: Sequence[tuple[int, int, bool]], threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Mean softmax over ``views`` and the clean image's embedding, one forward pass per batch.

    Parameters
    ----------
    model
        A :class:`training.model.LenslineNet` (switched to eval mode).
    images
        uint8 (N, S, S, 3) RGB.
    views
        ``(dx, dy, mirror)`` as :func:`view_of` makes them; the first should be (0, 0, False).
    threads
        torch intra-op threads while scoring (restored afterwards).

    Returns
    -------
    probs : np.ndarray
        float32 (N, K): mean over views of the softmax.
    embeddings : np.ndarray
        float32 (N, D): ``model.features`` of the first view.
    """
    import torch

    from training.data import preprocess

    model.eval()
    step = max(1, 2048 // len(views))  # images per forward pass: about 2048 views
    probs, embeddings = [], []
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        with torch.inference_mode():
            for start in range(0, len(images), step):
                x = preprocess(images[start : start + step])  # (B, 3, S, S)
                batch = torch.cat([_shift(x, *v) for v in views])
                feats = model.features(batch)
                soft = torch.softmax(model.head(feats), dim=1)
                probs.append(soft.view(len(views), len(x), -1).mean(0).numpy())
                embeddings.append(feats[: len(x)].numpy())
    finally:
        torch.set_num_threads(before)
    return np.concatenate(probs).astype(np.float32), np.concatenate(embeddings).astype(np.float32)


def _shift(x: Any, dx: int, dy: int, mirror: bool) -> Any:
    """:func:`view_of` on a normalised float batch (N, 3, S, S): edges repeated, then mirrored."""
    import torch.nn.functional as F

    if dx or dy:
        p = max(abs(dx), abs(dy))
        h, w = x.shape[-2:]
        x = F.pad(x, (p, p, p, p), mode="replicate")[:, :, p - dy : p - dy + h, p - dx : p - dx + w]
    return x.flip(3) if mirror else x


def view_of(images: np.ndarray, dx: int, dy: int, mirror: bool) -> np.ndarray:
    """uint8 (N, S, S, 3) shifted ``dx`` px right and ``dy`` px down (edges repeated, as the
    training augmentation pads), then mirrored left-right if ``mirror``; contiguous."""
    out = images
    if dx or dy:
        p = max(abs(dx), abs(dy))
        pad = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
        h, w = images.shape[1:3]
        out = pad[:, p - dy : p - dy + h, p - dx : p - dx + w]
    if mirror:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def _positions(videos: np.ndarray) -> np.ndarray:
    """int (N,): each row's position among the rows of its video (a stand-in frame number)."""
    out = np.zeros(len(videos), np.int64)
    for v in np.unique(videos):
        rows = np.flatnonzero(videos == v)
        out[rows] = np.arange(len(rows))
    return out
