"""Refresh that costs the change: extend the held-out outputs and warm-start the model when one
labelled video lands on a long history, and say which path each refresh took and why.

**Held-out probabilities** (``frame_embeddings``). The K fold models of the last full build
(:func:`training.crossval.cross_val_predict`) each trained on all frames but their fold's. The
frames of a video none of them saw are out of sample for every one of them, so their held-out
probabilities need no training: the mean of the fold models' test-time-augmented softmax
(:func:`extend_held_out`), and the embedding of one fold model (:func:`fold_for`, recorded in
the row's ``fold``). Every other row keeps its stored values. That holds only while those rows
are what the fold models were built from: :func:`plan_embeddings` goes the full way when any
stored row's vote, frame bytes or presence changed, when the settings (code version, config,
preprocessing, fold input side, classes) differ, when new frames belong to a video the fold
models trained on (near-duplicates of their training frames; except when the folds were drawn
frame by frame), when the new frames are more than ``max_new_share`` of the set, and when the
last full build is older than ``full_every_days``.

**The model** (``trained_model``). :func:`plan_training` warm-starts from the champion
(``TrainConfig.init_checkpoint``) with every new training frame and a replay of a share of the
past ones (:func:`replay_rows`) for fewer epochs; it trains in full when no full retrain is on
record within ``full_every_days``, when the last warm-started model lost the promotion gate,
when the champion was trained by other code, on other classes, preprocessing or architecture,
when the training frames hold a line condition the champion never trained on (a camera's
drift-labelled videos: a new look), or when any of its training frames now sits in val or test (a video that moved split: curation
keeps them, ``CurationConfig.stable_splits``). A past training frame whose label changed is
trained on again like a new one; one curation dropped is simply not replayed.

No Dagster and no lake here: the assets hand in tables and arrays and write what comes back.
Fold models are checkpoints (:func:`training.checkpoint.save_checkpoint`, safetensors) at the
fold input side; where they live is the asset's business (``artifacts/fold_models/``).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

__all__ = [
    "FoldState",
    "Refresh",
    "extend_held_out",
    "fold_for",
    "plan_embeddings",
    "plan_training",
    "replay_rows",
    "rows_digest",
    "settings_digest",
]

KEYS = ["video_id", "frame_index"]
ROW_COLUMNS = (*KEYS, "vote_label", "sha256")
"""What a fold model's training data is made of, per frame (:func:`rows_digest`)."""


@dataclass(frozen=True)
class Refresh:
    """The path one refresh took and why (asset metadata ``refresh``, ``refresh_reason``)."""

    path: Literal["incremental", "full"]
    reason: str

    def metadata(self) -> dict[str, str]:
        return {"refresh": self.path, "refresh_reason": self.reason}


def rows_digest(rows: pl.DataFrame) -> str:
    """sha256 (16 hex) of ``video_id, frame_index, vote_label, sha256`` rows, in key order."""
    frame = rows.select(ROW_COLUMNS).sort(KEYS)
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:16]


def settings_digest(**settings: Any) -> str:
    """sha256 (16 hex) of everything else the held-out outputs depend on, as sorted JSON."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class FoldState:
    """What a ``frame_embeddings`` materialisation keeps to be extended next time (its metadata
    ``fold_models``)."""

    models: list[dict[str, str]]
    """One ``{"uri", "sha256"}`` per fold model, fold order."""
    settings: str
    """:func:`settings_digest` of the build."""
    rows: str
    """:func:`rows_digest` of every row the table holds after this materialisation."""
    grouping: dict[str, Any]
    """The folds' grouping record (:func:`training.crossval.cross_val_predict`): ``grouping``
    is ``video``, ``time_block`` or ``frame``."""
    side: int
    """Input side of the fold models."""
    full_at: str
    """ISO time of the last full build."""
    table_version: int
    """The ``frame_embeddings`` version written with these rows."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> FoldState | None:
        """The state recorded in metadata, or None (none recorded, or by older code)."""
        try:
            return cls(**value)
        except TypeError:
            return None


def plan_embeddings(
    previous: FoldState | None,
    *,
    refresh: str,
    settings: str,
    stored: pl.DataFrame | None,
    stored_version: int | None,
    vote: pl.DataFrame,
    now: datetime,
    full_every_days: float,
    max_new_share: float,
) -> tuple[Refresh, np.ndarray]:
    """Whether ``frame_embeddings`` can be extended, and which rows of ``vote`` are new.

    Parameters
    ----------
    previous
        The last materialisation's :class:`FoldState` (None: none on record).
    refresh
        ``"auto"`` or ``"full"`` (always the full path).
    settings
        :func:`settings_digest` of this run.
    stored, stored_version
        The ``frame_embeddings`` table now and its version (None: no table).
    vote
        The majority vote per labelled frame (``video_id, frame_index, vote_label, sha256``).
    now
        The time (timezone-aware), against ``previous.full_at``.
    full_every_days
        A full build when the last one is at least this old (0: always).
    max_new_share
        A full build when new frames are more than this share of ``vote``.

    Returns
    -------
    refresh : Refresh
    new : np.ndarray
        bool (N,) over ``vote``'s rows: not in ``stored`` (all False on the full path).
    """
    none = np.zeros(vote.height, bool)

    def full(reason: str) -> tuple[Refresh, np.ndarray]:
        return Refresh("full", reason), none

    if refresh == "full":
        return full("refresh=full in the config")
    if previous is None or stored is None:
        return full("no stored fold models to extend")
    if stored_version != previous.table_version:
        return full(
            f"frame_embeddings is at version {stored_version}, the fold models were recorded "
            f"with version {previous.table_version}"
        )
    if previous.settings != settings:
        return full("code, config, preprocessing or classes changed since the fold models")
    age = now - datetime.fromisoformat(previous.full_at)
    if age >= timedelta(days=full_every_days):
        return full(f"last full build {previous.full_at} is {full_every_days:g}+ days old")
    new = ~_in(vote, stored)
    if rows_digest(vote.filter(~pl.Series(new))) != previous.rows:
        return full("votes, frames or membership of stored frames changed")
    share = float(new.mean()) if vote.height else 0.0
    if share > max_new_share:
        return full(f"{new.sum()} new frames are {share:.0%} of the set (> {max_new_share:.0%})")
    fresh = vote.filter(pl.Series(new))
    seen = set(fresh["video_id"].to_list()) & set(stored["video_id"].unique().to_list())
    if seen and previous.grouping.get("grouping") != "frame":
        return full(f"new frames of videos the fold models trained on: {sorted(seen)[:3]}")
    videos = fresh["video_id"].n_unique()
    return Refresh(
        "incremental",
        f"{new.sum()} new frames of {videos} new videos, held out by every fold model",
    ), new


def _in(rows: pl.DataFrame, other: pl.DataFrame) -> np.ndarray:
    """bool (len(rows),): whose key is in ``other``."""
    marked = other.select(KEYS).unique().with_columns(_hit=pl.lit(True))
    hit = rows.select(KEYS).join(marked, on=KEYS, how="left", maintain_order="left")["_hit"]
    return hit.fill_null(False).to_numpy()


def fold_for(videos: Sequence[str], k: int) -> np.ndarray:
    """int (N,): the fold model whose embedding a new frame carries, fixed per video (crc32)."""
    return np.array([zlib.crc32(str(v).encode()) % k for v in videos], np.int64)


def extend_held_out(
    models: Sequence[Any],
    images: np.ndarray,
    folds: np.ndarray,
    *,
    views: Sequence[tuple[int, int, bool]],
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out outputs of frames none of the fold models trained on.

    Parameters
    ----------
    models
        The k fold models (:class:`training.model.LenslineNet`).
    images
        uint8 (N, S, S, 3) RGB at the fold models' side.
    folds
        int (N,) in [0, k): whose embedding each frame carries (:func:`fold_for`).
    views
        Test-time views, as the full build used (:func:`training.crossval.tta_views`).
    threads
        torch intra-op threads.

    Returns
    -------
    probs : np.ndarray
        float32 (N, K): the mean over the fold models of their mean softmax over ``views``.
    embeddings : np.ndarray
        float32 (N, D): fold model ``folds[i]``'s penultimate features of the clean image.
    """
    from training.crossval import tta_predict

    probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    for f, model in enumerate(models):
        p, e = tta_predict(model, images, views, threads)
        probs = p if probs is None else probs + p
        if embeddings is None:
            embeddings = np.zeros_like(e)
        embeddings[folds == f] = e[folds == f]
    assert probs is not None and embeddings is not None
    return (probs / len(models)).astype(np.float32), embeddings


def plan_training(
    *,
    refresh: str,
    champion: Any,
    champion_meta: dict[str, str] | None,
    last: dict[str, Any] | None,
    last_alias: str | None,
    code_version: str,
    classes: list[str],
    spec: Any,
    widths: Sequence[int],
    past: pl.DataFrame | None,
    dataset: pl.DataFrame,
    now: datetime,
    full_every_days: float,
    new_conditions: Sequence[str] = (),
    members: int = 0,
) -> Refresh:
    """Whether ``trained_model`` warm-starts from the champion or trains in full.

    Parameters
    ----------
    refresh
        ``"auto"`` or ``"full"``.
    champion
        The registry's champion (:class:`training.registry.ModelRecord`) or None.
    champion_meta
        Its checkpoint's metadata (``classes``, ``config``, ``preprocess``).
    last
        The previous ``trained_model`` metadata as plain values (``refresh``,
        ``model_version``, ``last_full_at``), or None.
    last_alias
        The registry alias of the previous model now (``archived``: it lost the gate).
    code_version
        This code's training code version.
    classes, spec
        This run's class map and :class:`training.preprocess.PreprocessSpec`.
    widths
        Model widths this run may train (the config's, or the sweep's).
    past
        ``video_id, frame_index, label`` of the champion's training split.
    dataset
        ``video_id, frame_index, label, split`` of this run's dataset (kept frames).
    now, full_every_days
        A full retrain when the last one is at least this old (0: always).
    new_conditions
        Line conditions (``training.evaluate.condition_slices``: a camera, or its drift-labelled
        videos) of this run's training frames that the champion never trained on. A new look
        needs a full retrain: a warm start's few epochs at a lower rate adapt too little to it
        (drift scenario, camera 1 under gray gloves and dimmer light: 0.70 and 0.71 for two
        warm starts, 0.79 to 0.90 for five full retrains on the same labels).
    members
        Networks the config asks for (0: auto, any; a warm start keeps the champion's).
    """

    def full(reason: str) -> Refresh:
        return Refresh("full", reason)

    if refresh == "full":
        return full("refresh=full in the config")
    if champion is None or champion_meta is None:
        return full("no champion to warm-start from")
    if not last or not last.get("last_full_at"):
        return full("no full retrain on record")
    if now - datetime.fromisoformat(last["last_full_at"]) >= timedelta(days=full_every_days):
        return full(f"last full retrain {last['last_full_at']} is {full_every_days:g}+ days old")
    if last.get("refresh") == "incremental" and last_alias == "archived":
        return full(f"the warm-started {last.get('model_version')} lost the promotion gate")
    if champion.code_version != code_version:
        return full(f"the champion was trained by {champion.code_version}, not {code_version}")
    from training.preprocess import PreprocessSpec

    if json.loads(champion_meta["classes"]) != classes:
        return full("the classes differ from the champion's")
    if PreprocessSpec.from_json(champion_meta["preprocess"]) != spec:
        return full("the preprocessing differs from the champion's")
    if json.loads(champion_meta["config"]).get("width") not in widths:
        return full("the champion's width is not one this config trains")
    if members and (had := json.loads(champion_meta["config"]).get("members", 1)) != members:
        return full(f"the champion has {had} network(s); the config asks for {members}")
    if past is None:
        return full(f"the champion's dataset version {champion.dataset_version} is unreadable")
    held = past.join(dataset.filter(pl.col("split").is_in(["val", "test"])), on=KEYS, how="semi")
    if held.height:
        return full(f"{held.height} of the champion's training frames are now in val or test")
    if new_conditions:
        return full(
            f"new line condition(s) in the training split: {', '.join(sorted(new_conditions))} "
            "(a warm start adapts too little to a new look)"
        )
    train = dataset.filter(pl.col("split") == "train")
    new = train.join(past, on=[*KEYS, "label"], how="anti").height
    return Refresh(
        "incremental", f"warm start from {champion.model_version}: {new} new or relabelled frames"
    )


def replay_rows(is_new: np.ndarray, labels: np.ndarray, *, share: float, seed: int) -> np.ndarray:
    """int (M,) sorted rows to warm-start on: every new one and ``share`` of the past ones.

    The past rows are drawn per class (at least one of each class present), seeded, so every
    class the champion knows is replayed.
    """
    rng = np.random.default_rng(seed)
    keep = [np.flatnonzero(is_new)]
    for c in np.unique(labels[~is_new]):
        rows = np.flatnonzero(~is_new & (labels == c))
        n = min(len(rows), max(1, math.ceil(share * len(rows))))
        keep.append(rng.choice(rows, size=n, replace=False))
    return np.sort(np.concatenate(keep))
