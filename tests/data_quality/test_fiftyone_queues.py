"""data_quality.fiftyone_queues: the queue frames built from drift_queue and shadow_results
(the publishing itself needs FiftyOne's database: tests/test_drift_loop.py)."""

import polars as pl

from data_quality.fiftyone_queues import (
    QUEUES,
    needs_labels_frames,
    publish_queues,
    shadow_disagreement_frames,
)


def test_shadow_disagreements_are_the_differing_frames_the_lake_holds():
    shadow = pl.DataFrame({
        "video": ["v1", "v1", "v1", "v2"], "frame_index": [0, 1, 2, 0],
        "label": ["good", "dent", "good", "good"], "confidence": [0.9, 0.8, 0.7, 0.6],
        "shadow_label": ["good", "good", "dent", "dent"],
        "shadow_confidence": [0.9, 0.6, 0.55, 0.5],
    })  # fmt: skip
    frames = pl.DataFrame({
        "video_id": ["v1", "v1", "v1"], "frame_index": [0, 1, 2], "camera_id": ["c"] * 3,
        "uri": ["a.jpg", "b.jpg", "c.jpg"], "sha256": ["x"] * 3,
    })  # fmt: skip
    out = shadow_disagreement_frames(shadow, frames).sort("frame_index")
    assert out["frame_index"].to_list() == [1, 2]  # v2#0 is not in the lake; v1#0 agrees
    assert out["champion_label"].to_list() == ["dent", "good"]
    assert out["filepath"].to_list() == ["b.jpg", "c.jpg"]
    assert "sha256" not in out.columns and "video_id" in out.columns
    # a disagreement on a frame scored empty is not worth a label, unless asked for
    scored = frames.with_columns(item_present=pl.Series([True, False, None]))
    assert shadow_disagreement_frames(shadow, scored)["frame_index"].to_list() == [2]
    both = shadow_disagreement_frames(shadow, scored, include_empty=True)
    assert sorted(both["frame_index"].to_list()) == [1, 2]


def test_needs_labels_frames_and_nothing_published_without_tables():
    queue = pl.DataFrame({"video_id": ["v"], "frame_index": [3], "uri": ["f.jpg"],
                          "priority": [1]})  # fmt: skip
    assert needs_labels_frames(queue).columns == ["video_id", "frame_index", "filepath", "priority"]
    assert publish_queues("lensline", {"needs_labels": None, "shadow_disagreements": None}) == {}
    assert QUEUES["needs_labels"][1] == "priority"
    assert QUEUES["shadow_disagreements"][1] == "shadow_confidence"
