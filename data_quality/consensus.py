"""Multi-annotator consensus: cleanlab's CROWDLAB, computed in long format so it scales.

Two modes, chosen by whether model predictions are available:

* ``pred_probs`` given -> CROWDLAB (cleanlab's ``consensus_method="best_quality"``,
  ``quality_method="crowdlab"``): consensus and quality weigh every
  annotator's label by that annotator's estimated reliability, together
  with the model.
* no ``pred_probs`` -> majority vote (``consensus_method="majority_vote"``,
  ``quality_method="agreement"``): consensus quality is the fraction of
  annotators that agree; annotator quality is the agreement with consensus.

The numbers are those of :func:`cleanlab.multiannotator.get_label_quality_multiannotator`
(cleanlab 2.9, ``cleanlab/multiannotator.py``), but computed from one entry per
(frame, annotator) label instead of cleanlab's dense frames x annotators matrix, whose size
(and cleanlab's per-annotator loops over every frame) make 1 M labels from thousands of
annotators take minutes and gigabytes. :func:`crowdlab` follows cleanlab step by step (majority
vote and its four tie-breaks, annotator agreement with other annotators, the model and
annotator weights, the weighted ensemble of votes and model probabilities, the best-quality
consensus, annotator quality and worst class); ``tests/data_quality/test_consensus_long.py``
checks it against cleanlab on seeded sets (consensus labels identical, scores allclose).

Frames labelled by a single annotator keep that label. Their
``consensus_quality`` is the model's label quality score when
``pred_probs`` is given, otherwise the estimated quality of that annotator
(CROWDLAB's agreement score would be a vacuous 1.0). When no frame has two
annotators there is nothing to compare: quality comes from the model alone,
or is null without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["ConsensusResult", "Crowd", "CrowdStats", "compute_consensus", "crowdlab"]

_KEYS = ["video_id", "frame_index"]
_ANNOTATOR_SCHEMA = {
    "annotator": pl.String,
    "quality": pl.Float64,
    "agreement_with_consensus": pl.Float64,
    "num_labels": pl.Int64,
    "worst_class": pl.String,
}
_CLIP = 1e-6  # cleanlab.internal.constants.CLIPPING_LOWER_BOUND


@dataclass(frozen=True)
class ConsensusResult:
    """Output of :func:`compute_consensus`.

    Attributes
    ----------
    frames : pl.DataFrame
        One row per labelled frame, worst ``consensus_quality`` first (nulls
        last, then by key): ``video_id``, ``frame_index``, ``consensus_label``
        (class name), ``consensus_quality`` (0..1, higher = more likely
        correct), ``annotator_agreement`` (fraction of this frame's annotators
        agreeing with the consensus, 0..1), ``num_annotations``.
    annotators : pl.DataFrame
        One row per annotator, worst ``quality`` first: ``annotator``,
        ``quality`` (0..1), ``agreement_with_consensus`` (0..1, over all of
        the annotator's frames), ``num_labels``, ``worst_class`` (the class
        this annotator most often gets wrong, cleanlab's estimate; null when
        unknown).
    method : str
        ``"crowdlab"``, ``"majority_vote"``, ``"single_annotation"`` or ``"empty"``.
    """

    frames: pl.DataFrame
    annotators: pl.DataFrame
    method: str


@dataclass(frozen=True)
class Crowd:
    """Annotations in long format: one entry per (frame, annotator) label.

    Attributes
    ----------
    frame, annotator, label : np.ndarray of shape (L,), int64
        Frame row (0..N-1), annotator column (0..M-1) and class code (0..K-1) of each label,
        sorted by (frame, annotator), at most one label per (frame, annotator). Column ``m``
        is column ``m`` of cleanlab's ``labels_multiannotator``.
    n_frames, n_annotators, n_classes : int
        N, M and K.
    """

    frame: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    n_frames: int
    n_annotators: int
    n_classes: int

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, n_classes: int) -> Crowd:
        """Crowd of cleanlab's (N, M) ``labels_multiannotator`` (float, NaN = missing)."""
        frame, annotator = np.nonzero(~np.isnan(matrix))
        return cls(
            frame=frame.astype(np.int64),
            annotator=annotator.astype(np.int64),
            label=matrix[frame, annotator].astype(np.int64),
            n_frames=matrix.shape[0],
            n_annotators=matrix.shape[1],
            n_classes=n_classes,
        )

    def num_annotations(self) -> np.ndarray:
        """(N,) int64: labels per frame."""
        return np.bincount(self.frame, minlength=self.n_frames)

    def counts(self) -> np.ndarray:
        """(N, K) float: votes per frame and class."""
        k = self.n_classes
        flat = np.bincount(self.frame * k + self.label, minlength=self.n_frames * k)
        return flat.reshape(self.n_frames, k).astype(float)

    def per_annotator_mean(self, values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """(M,) mean of ``values`` (L,) over each annotator's labels (``where`` True); NaN if none."""
        w = np.ones(len(values)) if where is None else where.astype(float)
        num = np.bincount(
            self.annotator, weights=np.where(w > 0, values, 0.0), minlength=self.n_annotators
        )
        den = np.bincount(self.annotator, weights=w, minlength=self.n_annotators)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)


@dataclass(frozen=True)
class CrowdStats:
    """Output of :func:`crowdlab`, cleanlab's names.

    Attributes
    ----------
    consensus_label : np.ndarray of shape (N,), int64
    consensus_quality_score, annotator_agreement : np.ndarray of shape (N,), float
    annotator_quality, agreement_with_consensus : np.ndarray of shape (M,), float
        NaN where cleanlab gives NaN (``annotator_quality`` of an annotator who shares no
        frame with anyone).
    worst_class, num_examples_labeled : np.ndarray of shape (M,), int64
    label_quality_mean : np.ndarray of shape (M,), float
        Mean of cleanlab's ``detailed_label_quality`` per annotator (posterior probability
        of the annotator's labels).
    """

    consensus_label: np.ndarray
    consensus_quality_score: np.ndarray
    annotator_agreement: np.ndarray
    annotator_quality: np.ndarray
    agreement_with_consensus: np.ndarray
    worst_class: np.ndarray
    num_examples_labeled: np.ndarray
    label_quality_mean: np.ndarray


def _first_candidate(cand: np.ndarray) -> np.ndarray:
    return np.argmax(cand, axis=1)


def majority_vote(crowd: Crowd, pred_probs: np.ndarray | None = None) -> np.ndarray:
    """cleanlab's ``get_majority_vote_label`` in long format.

    Ties are broken as cleanlab does: by ``pred_probs``, then the rarer class, then the
    annotators' agreement with the untied majority, then ``np.random.choice`` (the global
    numpy RNG, frames in order).

    Returns
    -------
    np.ndarray of shape (N,), int64
    """
    counts = crowd.counts()
    cand = counts == counts.max(axis=1, keepdims=True)
    untied = cand.sum(axis=1) == 1
    label = _first_candidate(cand)
    tied = np.flatnonzero(~untied)
    if len(tied) and pred_probs is not None:  # 1: the model
        pp = np.where(cand[tied], pred_probs[tied], -np.inf)
        cand[tied] &= pp == pp.max(axis=1, keepdims=True)
        tied = tied[cand[tied].sum(axis=1) > 1]
    if len(tied):  # 2: the class fewer votes went to overall
        freq = np.where(cand[tied], counts.sum(axis=0), np.inf)
        cand[tied] &= freq == freq.min(axis=1, keepdims=True)
        tied = tied[cand[tied].sum(axis=1) > 1]
    if len(tied):  # 3: the annotators who agree more with the untied majority
        fr, lab = crowd.frame, crowd.label
        agree = crowd.per_annotator_mean(lab == label[fr], where=untied[fr])
        agree = np.where(np.isnan(agree), np.mean(agree[~np.isnan(agree)]), agree)
        in_tied = np.zeros(crowd.n_frames, bool)
        in_tied[tied] = True
        rows = in_tied[fr]
        k = crowd.n_classes
        key = fr[rows] * k + lab[rows]
        num = np.bincount(key, weights=agree[crowd.annotator[rows]], minlength=crowd.n_frames * k)
        den = np.bincount(key, minlength=crowd.n_frames * k)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (num / den).reshape(crowd.n_frames, k)[tied]
        score = np.where(cand[tied], score, -np.inf)
        best = cand[tied] & (score == score.max(axis=1, keepdims=True))
        cand[tied] = np.where(best.any(axis=1, keepdims=True), best, cand[tied])
        tied = tied[cand[tied].sum(axis=1) > 1]
    label = _first_candidate(cand)
    for i in tied:  # 4: random, as cleanlab (the caller seeds the global RNG)
        label[i] = np.random.choice(np.flatnonzero(cand[i]))
    return label.astype(np.int64)


def _peer_agreement(crowd: Crowd, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(M,) cleanlab's ``_get_annotator_agreement_with_annotators``."""
    fr = crowd.frame
    others = (n[fr] - 1).astype(float)
    same = counts[fr, crowd.label] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = np.where(others > 0, same / np.where(others > 0, others, 1), 0.0)
    num = np.bincount(crowd.annotator, weights=per_label * others, minlength=crowd.n_annotators)
    den = np.bincount(crowd.annotator, weights=others, minlength=crowd.n_annotators)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = np.where(den > 0, num / den, np.nan)
    if np.isnan(agree).any():  # shares no frame with anyone: the mean of the others
        agree[np.isnan(agree)] = np.mean(agree[~np.isnan(agree)])
    return agree


def _posterior(
    crowd: Crowd,
    counts: np.ndarray,
    n: np.ndarray,
    consensus: np.ndarray,
    pred_probs: np.ndarray,
    peer: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray]:
    """cleanlab's ``_get_post_pred_probs_and_weights`` (crowdlab): (post (N, K), model weight, annotator weights (M,))."""
    k = crowd.n_classes
    agreement = counts[np.arange(crowd.n_frames), consensus] / n
    multi = n != 1
    likely = np.mean(agreement[multi])
    unlikely = (1 - likely) / (k - 1)
    sub = consensus[multi]
    class_error = np.clip(np.mean(sub != np.argmax(np.bincount(sub, minlength=k))), _CLIP, None)
    weight = np.clip(1 - (1 - peer) / class_error, _CLIP, None)
    model_error = np.mean(np.argmax(pred_probs[multi], axis=1) != sub)
    model_weight = max(1 - model_error / class_error, _CLIP) * np.sqrt(np.mean(n))
    post = pred_probs * model_weight
    total = np.zeros(crowd.n_frames)
    # add each frame's annotators in column order, as cleanlab's loop over columns does
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    position = np.arange(len(crowd.frame)) - start[crowd.frame]
    classes = np.arange(k)
    for p in range(int(n.max())):
        at = np.flatnonzero(position == p)
        fr, w = crowd.frame[at], weight[crowd.annotator[at]]
        total[fr] += w
        post[fr] += np.where(
            crowd.label[at, None] == classes, w[:, None] * likely, w[:, None] * unlikely
        )
    post /= (total + model_weight)[:, None]
    return post, float(model_weight), weight


def _worst_class(crowd: Crowd, consensus: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(M,) cleanlab's ``_get_annotator_worst_class``: lowest accuracy, then most labels, then best quality."""
    k, m = crowd.n_classes, crowd.n_annotators
    key = crowd.annotator * k + crowd.label
    count = np.bincount(key, minlength=m * k).reshape(m, k).astype(float)
    right = np.bincount(key, weights=crowd.label == consensus[crowd.frame], minlength=m * k)
    score = np.bincount(key, weights=quality[crowd.frame], minlength=m * k)
    present = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(present, right.reshape(m, k) / count, np.inf)
        score = np.where(present, score.reshape(m, k) / count, -np.inf)
    cand = present & (accuracy == accuracy.min(axis=1, keepdims=True))
    many = np.where(cand, count, -1)
    cand &= many == many.max(axis=1, keepdims=True)
    score = np.where(cand, score, -np.inf)
    cand &= score == score.max(axis=1, keepdims=True)
    return _first_candidate(cand).astype(np.int64)


def crowdlab(crowd: Crowd, pred_probs: np.ndarray | None = None) -> CrowdStats:
    """cleanlab's ``get_label_quality_multiannotator`` from long-format labels.

    Parameters
    ----------
    crowd : Crowd
        The labels; every frame has at least one, some frame has two or more.
    pred_probs : np.ndarray of shape (N, K), optional
        Model probabilities per frame: CROWDLAB (``consensus_method="best_quality"``,
        ``quality_method="crowdlab"``). Without them: majority vote and agreement
        (``consensus_method="majority_vote"``, ``quality_method="agreement"``).

    Returns
    -------
    CrowdStats
        What cleanlab returns in ``label_quality`` and ``annotator_stats``, in frame and
        annotator order. Exhausted ties use the global numpy RNG, as cleanlab does.
    """
    n = crowd.num_annotations()
    counts = crowd.counts()
    fr, lab = crowd.frame, crowd.label
    rows = np.arange(crowd.n_frames)
    consensus = majority_vote(crowd, pred_probs)
    multi = n != 1
    if pred_probs is not None:
        peer = _peer_agreement(crowd, counts, n)
        post, _, _ = _posterior(crowd, counts, n, consensus, pred_probs, peer)
        top = post == post.max(axis=1, keepdims=True)
        consensus = np.where(top.sum(axis=1) == 1, np.argmax(post, axis=1), consensus)
        post, model_weight, weight = _posterior(crowd, counts, n, consensus, pred_probs, peer)
        quality = post[rows, consensus]
        label_quality = post[fr, lab]
    else:
        quality = counts[rows, consensus] / n
        label_quality = counts[fr, lab] / n[fr]
    agreement = counts[rows, consensus] / n
    right = lab == consensus[fr]
    agree_multi = crowd.per_annotator_mean(right, where=multi[fr])
    label_quality_mean = crowd.per_annotator_mean(label_quality)
    if pred_probs is not None:
        adjusted = np.sum(weight) * (np.mean(n) / crowd.n_annotators)
        w = model_weight / (model_weight + adjusted)
        annotator_quality = w * label_quality_mean + (1 - w) * agree_multi
    else:
        annotator_quality = agree_multi
    return CrowdStats(
        consensus_label=consensus.astype(np.int64),
        consensus_quality_score=quality,
        annotator_agreement=agreement,
        annotator_quality=annotator_quality,
        agreement_with_consensus=crowd.per_annotator_mean(right),
        worst_class=_worst_class(crowd, consensus, quality),
        num_examples_labeled=np.bincount(crowd.annotator, minlength=crowd.n_annotators),
        label_quality_mean=label_quality_mean,
    )


def _long(labels: pl.DataFrame, classes: Sequence[str]) -> tuple[pl.DataFrame, list[str], Crowd]:
    """Return (frame keys sorted, annotator ids sorted, the labels as a :class:`Crowd`)."""
    missing = {"video_id", "frame_index", "label", "annotator"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels lack columns {sorted(missing)}")
    unknown = sorted(set(labels["label"].drop_nulls().unique().to_list()) - set(classes))
    if unknown or labels["label"].null_count():
        raise ValueError(f"labels contain classes outside `classes`: {unknown or ['<null>']}")
    df = (
        labels.select(*_KEYS, "annotator", "label")
        .with_columns(pl.col("annotator").fill_null("unknown"))
        # An annotator who labelled a frame twice: the later row wins.
        .unique(subset=[*_KEYS, "annotator"], keep="last", maintain_order=True)
    )
    frames = df.select(_KEYS).unique().sort(_KEYS)
    annotators = sorted(df["annotator"].unique().to_list())
    df = (
        df.join(frames.with_row_index("_row"), on=_KEYS)
        .select(
            "_row",
            pl.col("annotator").cast(pl.Enum(annotators)).to_physical().alias("_ann"),
            pl.col("label").cast(pl.Enum(list(classes))).to_physical().alias("_code"),
        )
        .sort("_row", "_ann")
    )
    crowd = Crowd(
        frame=df["_row"].to_numpy().astype(np.int64),
        annotator=df["_ann"].to_numpy().astype(np.int64),
        label=df["_code"].to_numpy().astype(np.int64),
        n_frames=frames.height,
        n_annotators=len(annotators),
        n_classes=len(classes),
    )
    return frames, annotators, crowd


def _align(
    pred_probs: np.ndarray, frames: pl.DataFrame, frame_keys: pl.DataFrame | None, k: int
) -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != k:
        raise ValueError(f"pred_probs must have shape (N, {k}), got {pred_probs.shape}")
    if frame_keys is None:
        if len(pred_probs) != frames.height:
            raise ValueError(
                f"pred_probs has {len(pred_probs)} rows but there are {frames.height} labelled "
                "frames; pass frame_keys to say which row is which frame"
            )
        return pred_probs
    if frame_keys.height != len(pred_probs):
        raise ValueError("frame_keys and pred_probs must have the same number of rows")
    keyed = frame_keys.select(_KEYS).with_row_index("_p")
    joined = frames.join(keyed, on=_KEYS, how="left", maintain_order="left")
    if joined["_p"].null_count():
        raise ValueError(f"{joined['_p'].null_count()} labelled frame(s) missing from frame_keys")
    return pred_probs[joined["_p"].to_numpy()]


def _single_annotation(crowd: Crowd, pred_probs: np.ndarray | None) -> CrowdStats:
    consensus = np.zeros(crowd.n_frames, np.int64)
    consensus[crowd.frame] = crowd.label  # one label per frame
    if pred_probs is not None:
        quality = pred_probs[np.arange(crowd.n_frames), consensus]  # cleanlab self-confidence
        ann_quality = crowd.per_annotator_mean(quality[crowd.frame])
    else:
        quality = np.full(crowd.n_frames, np.nan)
        ann_quality = np.full(crowd.n_annotators, np.nan)
    return CrowdStats(
        consensus_label=consensus,
        consensus_quality_score=quality,
        annotator_agreement=np.ones(crowd.n_frames),
        annotator_quality=ann_quality,
        agreement_with_consensus=np.ones(crowd.n_annotators),
        worst_class=np.full(crowd.n_annotators, -1, np.int64),
        num_examples_labeled=np.bincount(crowd.annotator, minlength=crowd.n_annotators),
        label_quality_mean=ann_quality,
    )


def compute_consensus(
    labels: pl.DataFrame,
    *,
    classes: Sequence[str],
    pred_probs: np.ndarray | None = None,
    frame_keys: pl.DataFrame | None = None,
) -> ConsensusResult:
    """Consensus label per frame and a quality score per frame and annotator.

    Parameters
    ----------
    labels : pl.DataFrame
        Long labels table (``video_id``, ``frame_index``, ``label``,
        ``annotator``), e.g. from :func:`data_quality.labels.read_label_file`.
        If an annotator labelled a frame more than once, the last row wins
        (pass rows in import order). Every label must be in ``classes``.
    classes : sequence of str
        The K class names; class ``k`` is column ``k`` of ``pred_probs``.
    pred_probs : np.ndarray of shape (F, K), optional
        Out-of-sample predicted class probabilities per frame (rows sum to 1).
        Enables CROWDLAB; without it, majority vote.
    frame_keys : pl.DataFrame of shape (F, 2), optional
        ``video_id``, ``frame_index`` of each row of ``pred_probs`` (extra
        frames are ignored). If omitted, rows must be the distinct labelled
        frames sorted by (video_id, frame_index).

    Returns
    -------
    ConsensusResult
        ``frames`` and ``annotators`` tables, worst first (see
        :class:`ConsensusResult`).
    """
    classes = list(classes)
    k = len(classes)
    frames, annotators, crowd = _long(labels, classes)
    probs = _align(pred_probs, frames, frame_keys, k) if pred_probs is not None else None
    num_annotations = crowd.num_annotations()

    if frames.height == 0:
        return ConsensusResult(
            frames=frames.with_columns(
                consensus_label=pl.lit(None, pl.String),
                consensus_quality=pl.lit(None, pl.Float64),
                annotator_agreement=pl.lit(None, pl.Float64),
                num_annotations=pl.lit(None, pl.Int64),
            ),
            annotators=pl.DataFrame(schema=_ANNOTATOR_SCHEMA),
            method="empty",
        )
    if len(annotators) < 2 or (num_annotations < 2).all():
        method = "single_annotation"
        stats = _single_annotation(crowd, probs)
        quality = stats.annotator_quality
        frame_quality = stats.consensus_quality_score
    else:
        method = "crowdlab" if probs is not None else "majority_vote"
        # cleanlab breaks exhausted ties with the global numpy RNG: seed it locally.
        state = np.random.get_state()
        np.random.seed(0)
        try:
            stats = crowdlab(crowd, probs)
        finally:
            np.random.set_state(state)
        quality = stats.annotator_quality
        # Annotators who never overlap with anyone: fall back to their mean label quality.
        fallback = (
            stats.label_quality_mean
            if probs is not None
            else np.full(
                len(annotators), np.nanmean(quality) if np.isfinite(quality).any() else np.nan
            )
        )
        quality = np.where(np.isnan(quality), fallback, quality)
        frame_quality = stats.consensus_quality_score.copy()
        if probs is None:  # a lone label is only as good as its annotator
            single = num_annotations == 1
            frame_quality[crowd.frame[single[crowd.frame]]] = quality[
                crowd.annotator[single[crowd.frame]]
            ]

    frames_out = frames.with_columns(
        consensus_label=pl.Series(
            np.array(classes, dtype=object)[stats.consensus_label], dtype=pl.String
        ),
        consensus_quality=pl.Series(frame_quality, dtype=pl.Float64).fill_nan(None),
        annotator_agreement=pl.Series(stats.annotator_agreement, dtype=pl.Float64),
        num_annotations=pl.Series(num_annotations, dtype=pl.Int64),
    ).sort(["consensus_quality", *_KEYS], nulls_last=True)
    worst = [classes[w] if w >= 0 else None for w in stats.worst_class.tolist()]
    annotators_out = pl.DataFrame(
        schema=_ANNOTATOR_SCHEMA,
        data={
            "annotator": annotators,
            "quality": pl.Series(quality, dtype=pl.Float64).fill_nan(None),
            "agreement_with_consensus": stats.agreement_with_consensus,
            "num_labels": stats.num_examples_labeled.astype(np.int64),
            "worst_class": pl.Series(worst, dtype=pl.String),
        },
    ).sort(["quality", "agreement_with_consensus", "annotator"], nulls_last=True)
    return ConsensusResult(frames=frames_out, annotators=annotators_out, method=method)
