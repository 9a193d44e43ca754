"""data_quality.presence on tiny seeded frames: a belt with and without a blob, and ingestion
storing the score with the frames."""

from __future__ import annotations

import numpy as np
import pytest

from data_quality.presence import (
    MIN_FRAMES,
    item_present,
    presence_scores,
    thumbnail,
)

W, H = 160, 120


def _belt(rng: np.random.Generator) -> np.ndarray:
    """A dark textured belt with sensor noise, BGR uint8 (H, W, 3)."""
    base = np.full((H, W, 3), 40, np.int16) + (np.arange(W) % 16 < 2)[None, :, None] * 15
    return np.clip(base + rng.normal(0, 4, (H, W, 3)), 0, 255).astype(np.uint8)


def _with_item(img: np.ndarray, cx: float, cy: float, r: int = 16) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.circle(out, (int(cx), int(cy)), r, (190, 195, 200), -1)
    return out


def _frames(seed: int = 0):
    """12 frames: 4 with an item in the centre, 2 with one at the left edge, 6 empty."""
    rng = np.random.default_rng(seed)
    frames = [_belt(rng) for _ in range(12)]
    for i in (1, 4, 7, 10):
        frames[i] = _with_item(frames[i], W / 2 + 3 * i, H / 2)
    for i in (2, 9):
        frames[i] = _with_item(frames[i], 10, H / 2)  # centre outside the window
    return frames, {1, 4, 7, 10}


def test_a_centred_blob_scores_present_and_empty_or_edge_frames_do_not():
    frames, items = _frames()
    scores = presence_scores([thumbnail(f) for f in frames])
    assert scores.shape == (12,) and ((scores >= 0) & (scores <= 1)).all()
    assert item_present(scores) == [i in items for i in range(12)]
    assert scores[sorted(items)].min() == 1.0 and scores[[0, 3, 5]].max() == 0.0


def test_the_background_comes_from_the_frames_named():
    # frames kept because a label names them cluster on items: with more item frames than empty
    # ones the median is the item (every empty frame then differs from it in the centre): the
    # background is taken over the grid frames only, and a background most of whose frames
    # score present gives unknown scores rather than wrong ones
    rng = np.random.default_rng(1)
    grid = [_belt(rng) for _ in range(8)] + [_with_item(_belt(rng), W / 2, H / 2) for _ in range(2)]
    labelled = [_with_item(_belt(rng), W / 2 + i, H / 2) for i in range(10)]
    thumbs = [thumbnail(f) for f in grid + labelled]
    truth = [False] * 8 + [True] * 12
    assert item_present(presence_scores(thumbs, background_from=range(10))) == truth
    assert np.isnan(presence_scores(thumbs)).all()  # the item as background: unknown


def test_too_few_frames_are_unknown():
    frames, _ = _frames()
    scores = presence_scores([thumbnail(f) for f in frames[: MIN_FRAMES - 1]])
    assert np.isnan(scores).all() and item_present(scores) == [None] * (MIN_FRAMES - 1)


@pytest.mark.parametrize(("size", "shape"), [((1920, 1080), (45, 80, 3)), ((320, 240), (60, 80, 3)),
                                             ((64, 48), (48, 64, 3))])  # fmt: skip
def test_thumbnails_are_80_pixels_wide_or_the_frame(size, shape):
    assert thumbnail(np.zeros((size[1], size[0], 3), np.uint8)).shape == shape


def test_ingestion_stores_the_score_with_the_frames(tmp_path):
    import av

    from data_quality import contract
    from data_quality.ingest import frame_rows, sample_video, summarize_ingest

    frames, items = _frames(3)
    path = tmp_path / "belt.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        c.mux(s.encode())
    sampled = sample_video(path, name="landing/belt.mp4", stride=1)
    rows = frame_rows("cam1__belt", "cam1", sampled, [f"{i}.jpg" for i in range(12)])
    assert list(contract.FRAMES)[-2:] == ["item_presence", "item_present"]
    assert rows["item_present"].to_list() == [i in items for i in range(12)]
    assert rows["item_presence"].null_count() == 0
    summary = summarize_ingest(sampled.report, rows, ingest_s=0).frames_metadata
    assert summary is not None and summary["frames_with_item"] == len(items)
    plain = sample_video(path, name="landing/belt.mp4", stride=1, score_presence=False)
    rows = frame_rows("cam1__belt", "cam1", plain, [f"{i}.jpg" for i in range(12)])
    assert rows["item_present"].null_count() == rows["item_presence"].null_count() == 12
    summary = summarize_ingest(plain.report, rows, ingest_s=0).frames_metadata
    assert summary is not None and summary["frames_with_item"] == "not scored"
