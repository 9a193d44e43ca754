"""The labels of a crowd in long format and what the consensus methods compute from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CLIP", "Crowd", "CrowdStats", "first_candidate"]

CLIP = 1e-6  # cleanlab.internal.constants.CLIPPING_LOWER_BOUND


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


def first_candidate(cand: np.ndarray) -> np.ndarray:
    """(N,) index of the first True per row of ``cand`` (N, K): the lowest-code candidate."""
    return np.argmax(cand, axis=1)
