"""The label_issues table and its issue types (on seeded clusters with held-out probabilities)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from data_quality.label_issues import REGISTRY, find_label_issues, issue_counts
from data_quality.plots import worst_examples_grid
from data_quality.pred_probs import cosine_knn_graph


def _held_out_probs(x, y, n_classes, groups=None):
    """Held-out class probabilities (N, K): grouped K-fold logistic regression.

    A stand-in for :func:`training.crossval.cross_val_predict` (which trains the CNN on
    images): what matters here is only that no row's probabilities saw its label.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict

    cv = GroupKFold(5) if groups is not None else StratifiedKFold(5, shuffle=True, random_state=0)
    probs = cross_val_predict(
        LogisticRegression(max_iter=1000), x, y, groups=groups, cv=cv, method="predict_proba"
    )
    assert probs.shape == (len(y), n_classes)
    return probs


def _clusters(n=300, k=3, d=16, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    truth = rng.integers(0, k, n)
    x = centers[truth] + rng.normal(size=(n, d))
    given = truth.copy()
    flip = rng.random(n) < noise
    given[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    keys = pl.DataFrame({"video_id": [f"v{i % 10}" for i in range(n)], "frame_index": np.arange(n)})
    return x, truth, given, flip, keys


def test_finds_flipped_labels_deterministically():
    x, truth, given, flip, keys = _clusters()
    probs = _held_out_probs(x, given, n_classes=3, groups=keys["video_id"].to_numpy())
    assert np.array_equal(
        probs, _held_out_probs(x, given, n_classes=3, groups=keys["video_id"].to_numpy())
    )
    df = find_label_issues(given, probs, keys=keys, features=x, classes=["a", "b", "c"])
    found = df["is_label_issue"].to_numpy()
    precision = (found & flip).sum() / found.sum()
    recall = (found & flip).sum() / flip.sum()
    assert precision > 0.85 and recall > 0.85
    assert df["suggested_label"].to_list() == [["a", "b", "c"][i] for i in probs.argmax(1)]
    assert df["label_quality"].filter(df["is_label_issue"]).mean() < df["label_quality"].mean()
    assert set(df["given_label"].unique()) <= {"a", "b", "c"}


def test_table_schema_is_stable_and_missing_inputs_give_nulls():
    x, _, given, _, keys = _clusters(n=60)
    probs = _held_out_probs(x, given, n_classes=3)
    bare = find_label_issues(given, probs, keys=keys)
    full_cols = [
        "video_id",
        "frame_index",
        "given_label",
        "suggested_label",
        "label_quality",
        "is_label_issue",
        "suggested_confidence",
        "is_outlier",
        "outlier_score",
        "is_near_duplicate",
        "near_duplicate_score",
        "near_duplicate_set",
        "is_dark",
        "dark_score",
        "is_overexposed",
        "overexposed_score",
        "is_blurry",
        "blurry_score",
    ]
    assert bare.columns == full_cols
    assert bare["is_outlier"].null_count() == 60 and bare["is_dark"].null_count() == 60
    assert bare["given_label"][0] in {"0", "1", "2"}
    only = find_label_issues(given, probs, keys=keys, features=x, issue_types=["outlier"])
    assert only.columns == full_cols and only["is_near_duplicate"].null_count() == 60
    assert only["is_outlier"].null_count() == 0
    with pytest.raises(ValueError, match="unknown issue types"):
        find_label_issues(given, probs, keys=keys, issue_types=["nope"])
    with pytest.raises(ValueError, match="differ in length"):
        find_label_issues(given[:-1], probs, keys=keys)


def test_outliers_near_duplicates_and_frame_quality():
    x, _, given, _, keys = _clusters(n=120, seed=3)
    x[7] = 40.0 * np.sign(np.arange(x.shape[1]) % 2 - 0.5)  # far off every cluster direction
    x[20] = x[30] + 1e-6  # near-identical pair
    quality = pl.DataFrame(
        {
            "video_id": keys["video_id"],
            "frame_index": keys["frame_index"],
            "brightness": np.r_[10.0, 250.0, np.full(118, 120.0)],
            "sharpness": np.r_[np.full(2, 300.0), 5.0, np.full(117, 300.0)],
        }
    ).filter(pl.col("frame_index") != 50)  # one frame without quality stats
    probs = _held_out_probs(x, given, n_classes=3)
    df = find_label_issues(
        given,
        probs,
        keys=keys,
        features=x,
        quality=quality,
        issue_params={"dark": {"threshold": 30}},
    )
    assert df["is_outlier"][7] and df["outlier_score"][7] == df["outlier_score"].min()
    assert df["is_near_duplicate"][20] and df["is_near_duplicate"][30]
    assert df["near_duplicate_set"][20] == df["near_duplicate_set"][30] == 20
    assert df["is_dark"].to_list()[:3] == [True, False, False] and df["dark_score"][0] < 0.5
    assert df["is_overexposed"][1] and df["is_blurry"][2]
    assert df["is_dark"][50] is None and df["blurry_score"][50] is None
    counts = issue_counts(df)
    assert set(counts) == set(REGISTRY)
    assert counts["dark"] == 1 and counts["overexposed"] == 1 and counts["blurry"] == 1
    assert counts["near_duplicate"] >= 2


def test_knn_graph_matches_cleanlab():
    from cleanlab.internal.neighbor.knn_graph import create_knn_graph_and_index

    x = np.random.default_rng(4).normal(size=(150, 12)).astype(np.float32)
    ours = cosine_knn_graph(x, k=5)
    theirs, _ = create_knn_graph_and_index(x, n_neighbors=5, metric="cosine")
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_allclose(ours.data, theirs.data, atol=1e-5)


def test_worst_examples_grid_png():
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(7)]
    png = worst_examples_grid(images, [f"frame {i}" for i in range(7)], ncols=3)
    assert png.startswith(b"\x89PNG")
    assert worst_examples_grid([], []).startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        worst_examples_grid(images, ["only one"])


def _two_cameras(seed: int = 0, n: int = 200):
    """Camera ``xray``: bright parts on black (every frame dark, little texture); camera ``belt``:
    a lit belt. One real anomaly per camera and kind: lights off, glare, out of focus."""
    rng = np.random.default_rng(seed)
    brightness = np.r_[rng.normal(22, 3, n), rng.normal(120, 8, n)].clip(0, 255)
    sharpness = np.r_[rng.lognormal(np.log(40), 0.2, n), rng.lognormal(np.log(300), 0.2, n)]
    brightness[[5, n + 5]] = [2.0, 30.0]  # black frame; belt with its lights off
    brightness[n + 6] = 250.0  # glare
    sharpness[[7, n + 7]] = [3.0, 20.0]  # out of focus
    keys = pl.DataFrame(
        {"video_id": np.repeat(["xray__a", "belt__a"], n), "frame_index": np.tile(np.arange(n), 2)}
    )
    quality = keys.with_columns(
        camera_id=pl.Series(np.repeat(["xray", "belt"], n)),
        brightness=pl.Series(brightness),
        sharpness=pl.Series(sharpness),
    )
    return keys, quality


def test_a_camera_of_dark_background_frames_keeps_them_and_anomalies_are_still_found():
    """Issue 7.14: absolute thresholds flagged every frame of a dark-background camera."""
    from data_quality.curate import curate

    keys, quality = _two_cameras()
    n = keys.height
    labels = np.arange(n) % 2
    probs = np.eye(2)[labels] * 0.9 + 0.05
    df = find_label_issues(
        labels,
        probs,
        keys=keys,
        quality=quality,
        classes=["good", "defect"],
        issue_types=["dark", "overexposed", "blurry"],
    )
    flagged = df.with_row_index().filter(
        pl.col("is_dark") | pl.col("is_overexposed") | pl.col("is_blurry")
    )
    assert sorted(flagged["index"].to_list()) == [5, 7, 205, 206, 207]
    assert flagged.filter(pl.col("is_dark"))["index"].to_list() == [5, 205]
    consensus = keys.with_columns(
        consensus_label=pl.Series(np.array(["good", "defect"])[labels]), consensus_quality=0.9
    )
    out = curate(consensus, df)
    quality_drop = pl.col("reasons").list.set_intersection(["dark", "overexposed", "blurry"])
    kept = (
        out.filter(quality_drop.list.len() == 0)
        .group_by(pl.col("video_id").str.split("__").list.first().alias("camera"))
        .len()
    )
    assert dict(kept.iter_rows()) == {"xray": 198, "belt": 197}  # absolute thresholds: 0 / 197
