"""Consensus labels and annotator quality (cleanlab.multiannotator)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from data_quality.consensus import compute_consensus

CLASSES = ["defect", "good", "scratch"]


def _crowd(n=240, flips=None, seed=0, single_frac=0.0):
    """Three annotators label n frames; returns (labels table, true class codes, pred_probs)."""
    flips = flips or {"alice": 0.05, "bob": 0.05, "sloppy": 0.30}
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    rows = []
    for i, t in enumerate(truth):
        names = list(flips)
        if rng.random() < single_frac:
            names = [names[rng.integers(0, 2)]]  # only alice or bob
        for name in names:
            lab = t if rng.random() >= flips[name] else (t + rng.integers(1, 3)) % 3
            rows.append((f"v{i % 7}", i, CLASSES[lab], name))
    labels = pl.DataFrame(
        rows, schema=["video_id", "frame_index", "label", "annotator"], orient="row"
    )
    probs = np.full((n, 3), 0.15)
    noisy_model = np.where(rng.random(n) < 0.8, truth, rng.integers(0, 3, n))
    probs[np.arange(n), noisy_model] = 0.7
    return labels, truth, probs


def _truth_frame(truth):
    return pl.DataFrame(
        {"video_id": [f"v{i % 7}" for i in range(len(truth))], "frame_index": range(len(truth))}
    )


@pytest.mark.parametrize("with_model", [False, True])
def test_sloppy_annotator_is_worst_and_consensus_is_accurate(with_model):
    labels, truth, probs = _crowd()
    keys = _truth_frame(truth).sort(["video_id", "frame_index"])
    order = keys["frame_index"].to_numpy()
    result = compute_consensus(
        labels, classes=CLASSES, pred_probs=probs[order] if with_model else None
    )
    assert result.method == ("crowdlab" if with_model else "majority_vote")
    ann = result.annotators
    assert ann.columns == [
        "annotator",
        "quality",
        "agreement_with_consensus",
        "num_labels",
        "worst_class",
    ]
    assert ann["annotator"][0] == "sloppy"
    assert ann["quality"][0] < ann["quality"][1] - 0.1
    assert ann["num_labels"].to_list() == [240, 240, 240]

    frames = result.frames
    assert frames.columns == [
        "video_id",
        "frame_index",
        "consensus_label",
        "consensus_quality",
        "annotator_agreement",
        "num_annotations",
    ]
    assert frames.height == 240
    assert frames["consensus_quality"].is_sorted()
    got = frames.sort("frame_index")["consensus_label"].to_list()
    accuracy = np.mean([g == CLASSES[t] for g, t in zip(got, truth, strict=True)])
    assert accuracy > 0.95
    # frames where annotators disagree are the least trustworthy ones
    worst = frames.head(20)["annotator_agreement"].mean()
    assert worst < frames["annotator_agreement"].mean() - 0.2


def test_frame_keys_reorder_pred_probs_and_extra_rows_are_ignored():
    labels, truth, probs = _crowd(n=60, seed=1)
    keys = _truth_frame(truth)  # frame order 0..59, not key-sorted
    extra = pl.DataFrame({"video_id": ["zz"], "frame_index": [0]})
    probs_extra = np.vstack([probs, [[1 / 3] * 3]])
    a = compute_consensus(
        labels, classes=CLASSES, pred_probs=probs_extra, frame_keys=pl.concat([keys, extra])
    )
    order = keys.sort(["video_id", "frame_index"])["frame_index"].to_numpy()
    b = compute_consensus(labels, classes=CLASSES, pred_probs=probs[order])
    assert a.frames.equals(b.frames) and a.annotators.equals(b.annotators)
    with pytest.raises(ValueError, match="missing from frame_keys"):
        compute_consensus(labels, classes=CLASSES, pred_probs=probs[:10], frame_keys=keys.head(10))


def test_single_annotator_frames_and_deterministic():
    labels, truth, probs = _crowd(n=120, seed=2, single_frac=0.5)
    r1 = compute_consensus(labels, classes=CLASSES)
    r2 = compute_consensus(labels, classes=CLASSES)
    assert r1.frames.equals(r2.frames)
    singles = r1.frames.filter(pl.col("num_annotations") == 1)
    assert singles.height > 30
    assert singles["annotator_agreement"].to_list() == [1.0] * singles.height
    # without a model a lone label is only as good as its annotator (not a vacuous 1.0)
    assert singles["consensus_quality"].max() < 1.0
    assert r1.annotators["annotator"][0] == "sloppy"


def test_only_single_annotations():
    labels = pl.DataFrame(
        {
            "video_id": ["a", "a", "b"],
            "frame_index": [1, 2, 1],
            "label": ["good", "defect", "good"],
            "annotator": ["x", "y", "x"],
        }
    )
    r = compute_consensus(labels, classes=CLASSES)
    assert r.method == "single_annotation"
    assert r.frames["consensus_quality"].null_count() == 3
    probs = np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    r = compute_consensus(labels, classes=CLASSES, pred_probs=probs)
    assert (
        r.frames["frame_index"].to_list()[0] == 1 and r.frames["video_id"][0] == "b"
    )  # worst first
    assert r.annotators["annotator"].to_list() == ["x", "y"]


def test_repeated_label_last_wins_and_unknown_class_rejected():
    labels = pl.DataFrame(
        {
            "video_id": ["a"] * 4,
            "frame_index": [1, 1, 1, 1],
            "label": ["good", "good", "defect", "defect"],
            "annotator": ["x", "y", "z", "x"],
        }
    )
    r = compute_consensus(labels, classes=CLASSES)
    assert r.frames["consensus_label"].to_list() == ["defect"]  # x corrected good -> defect
    assert r.frames["num_annotations"].to_list() == [3]
    with pytest.raises(ValueError, match="outside `classes`"):
        compute_consensus(labels, classes=["good"])
    empty = compute_consensus(labels.head(0), classes=CLASSES)
    assert empty.frames.height == 0 and empty.annotators.height == 0
