"""data_quality.drift.per_camera: per-camera references from a champion's frames (held out
preferred, strided to a cap) and the drift queue of one video (seeded synthetic frames)."""

from datetime import UTC, datetime

import numpy as np
import polars as pl

from data_quality.drift.per_camera import build_camera_references, drift_queue_rows

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _frames(camera, videos, per_video, trained):
    rows = []
    for v in videos:
        for i in range(per_video):
            rows.append({"video_id": f"{camera}-{v}", "frame_index": i, "camera_id": camera,
                         "trained": v in trained, "uri": f"{camera}/{v}/{i}.jpg"})  # fmt: skip
    return pl.DataFrame(rows)


def _decode(group):
    rng = np.random.default_rng(group.height)
    return [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(group.height)]


def test_held_out_videos_are_preferred_and_strided_to_the_cap():
    frames = pl.concat([
        _frames("cam1", ["a", "b", "c"], 30, trained={"a"}),  # 60 held-out frames
        _frames("cam2", ["d", "e"], 20, trained={"d", "e"}),  # none held out: in-sample
    ])  # fmt: skip
    scored, logged = [], []

    def score(bgr, cameras):
        scored.append(set(cameras))
        return np.ones((len(bgr), 4)), np.full((len(bgr), 2), 0.5)

    built = list(build_camera_references(
        frames.sample(fraction=1.0, shuffle=True, seed=0), version="m-1", decode=_decode,
        score=score, max_frames_per_camera=25, min_frames=24, log=logged.append,
    ))  # fmt: skip
    assert [b.camera_id for b in built] == ["cam1", "cam2"]
    cam1, cam2 = built
    assert cam1.held_out and cam1.frames == 20 and cam1.videos == 2  # 60 frames, stride 3
    assert not cam2.held_out and cam2.frames == 20 and cam2.videos == 2  # 40, stride 2
    assert scored == [{"cam1"}]  # in-sample frames are not scored
    assert cam1.reference.embeddings is not None and cam2.reference.embeddings is None
    assert cam1.reference.version == "m-1" and cam1.reference.camera_id == "cam1"
    assert "held-out videos" in logged[0] and "training videos only" in logged[1]
    row = cam1.row("s3://x/cam1.npz", created_at=NOW)
    assert list(row) == ["camera_id", "model_version", "uri", "frames", "videos", "held_out",
                         "created_at"]  # fmt: skip
    assert row["frames"] == 20 and row["held_out"] is True and row["created_at"] == NOW


def _video(n=40, seed=0):
    rng = np.random.default_rng(seed)
    frames = pl.DataFrame({"video_id": ["v"] * n, "frame_index": list(range(n)),
                           "camera_id": ["cam1"] * n, "uri": [f"{i}.jpg" for i in range(n)]})  # fmt: skip
    probs = rng.dirichlet([1.0, 1.0, 1.0], n)
    return frames, rng.normal(size=(n, 8)), probs, rng.normal(size=(30, 8))


def test_data_or_prediction_drift_queues_the_budget_in_priority_order():
    frames, emb, probs, ref = _video()
    queue = drift_queue_rows(frames, ["prediction", "data"], emb, probs, ref, budget=7, now=NOW)
    assert queue.columns == ["video_id", "frame_index", "camera_id", "uri", "priority",
                             "reason", "queued_at"]  # fmt: skip
    assert queue.height == 7 and queue["frame_index"].n_unique() == 7
    assert queue["priority"].to_list() == list(range(1, 8))
    assert set(queue["reason"]) == {"data+prediction drift"}
    assert queue["queued_at"][0] == NOW
    assert queue.schema["priority"] == pl.Int64


def test_viewpoint_shift_or_no_drift_or_no_budget_queues_nothing():
    frames, emb, probs, ref = _video()
    for drifted, budget in ((["data", "viewpoint"], 7), ([], 7), (["data"], 0)):
        queue = drift_queue_rows(frames, drifted, emb, probs, ref, budget=budget, now=NOW)
        assert queue.height == 0 and "priority" in queue.columns


def test_frames_without_an_item_take_no_budget_unless_a_share_asks():
    frames, emb, probs, ref = _video()
    present = [None if i % 10 == 0 else i % 4 == 0 for i in range(40)]  # null: never scored
    frames = frames.with_columns(item_present=pl.Series(present, dtype=pl.Boolean))
    items = {i for i, p in enumerate(present) if p is not False}
    queue = drift_queue_rows(frames, ["data"], emb, probs, ref, budget=30, now=NOW)
    assert set(queue["frame_index"]) == items and queue.height == len(items) == 12
    queue = drift_queue_rows(frames, ["data"], emb, probs, ref, budget=10, now=NOW,
                             empty_share=0.2)  # fmt: skip
    picked = queue["frame_index"].to_list()
    assert len(picked) == 10 and set(picked[:8]) <= items and not set(picked[8:]) & items
    assert queue["priority"].to_list() == list(range(1, 11))
