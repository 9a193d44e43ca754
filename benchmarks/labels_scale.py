"""Scale of label import and consensus (issue 7.12): a generated 1 M-label CSV.

Reproduce (repo root)::

    python benchmarks/labels_scale.py                       # 1,000,000 labels, 2,700 annotators
    python benchmarks/labels_scale.py --labels 100000 --annotators 300

Writes a valid CSV (``video, frame_index, label, annotator``; 3 annotators per frame drawn from
``--annotators``, 10 % disagreement) into a temp landing zone, then times, in the same run:

* baseline: a bare ``polars.read_csv`` of the file (the floor for any import);
* Lensline import: ``data_quality.labels.read_label_file`` (parse + every validation rule);
* consensus: ``data_quality.consensus.compute_consensus`` with held-out ``pred_probs``
  (CROWDLAB), as ``label_consensus`` runs it.

Target (issue 7.12): import + consensus <= 30 s for 1 M labels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def make_csv(path: Path, *, n_labels: int, n_annotators: int, n_videos: int, seed: int):
    """Write the CSV; return (videos table, frame keys, pred_probs (F, K), classes)."""
    rng = np.random.default_rng(seed)
    classes = ["good", "scratch", "dent", "missing part"]
    per_frame = 3
    n_frames = n_labels // per_frame
    frames_per_video = -(-n_frames // n_videos)
    video = np.arange(n_frames) // frames_per_video
    frame = np.arange(n_frames) % frames_per_video
    truth = rng.choice(len(classes), n_frames, p=[0.7, 0.1, 0.1, 0.1])
    who = np.stack(
        [rng.choice(n_annotators, n_frames) for _ in range(per_frame)], axis=1
    )  # may repeat: keep the first of each (frame, annotator)
    rows = pl.DataFrame(
        {
            "video": np.repeat([f"line_{v:04d}.mp4" for v in video], per_frame),
            "frame_index": np.repeat(frame, per_frame),
            "_truth": np.repeat(truth, per_frame),
            "annotator": [f"ann{a:04d}" for a in who.ravel()],
        }
    ).unique(subset=["video", "frame_index", "annotator"], keep="first", maintain_order=True)
    flip = rng.random(rows.height) < 0.1
    code = np.where(flip, rng.integers(0, len(classes), rows.height), rows["_truth"].to_numpy())
    rows = rows.with_columns(label=pl.Series(np.array(classes)[code])).drop("_truth")
    rows.select("video", "frame_index", "label", "annotator").write_csv(path)
    videos = pl.DataFrame(
        {
            "video_id": [f"cam1__line_{v:04d}" for v in range(n_videos)],
            "camera_id": "cam1",
            "file": [f"line_{v:04d}.mp4" for v in range(n_videos)],
            "frame_count": frames_per_video,
        }
    )
    keys = pl.DataFrame({"video_id": [f"cam1__line_{v:04d}" for v in video], "frame_index": frame})
    probs = np.full((n_frames, len(classes)), 0.1)
    probs[np.arange(n_frames), truth] = 0.7
    return videos, keys, probs / probs.sum(1, keepdims=True), classes, rows.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=2_700)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-consensus", action="store_true")
    args = parser.parse_args()

    from data_quality.consensus import compute_consensus
    from data_quality.labels import read_label_file

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "labels").mkdir()
        csv = root / "labels" / "big.csv"
        t = time.perf_counter()
        videos, keys, probs, classes, n = make_csv(
            csv,
            n_labels=args.labels,
            n_annotators=args.annotators,
            n_videos=args.videos,
            seed=args.seed,
        )
        print(
            f"generated {n:,} labels, {csv.stat().st_size / 1e6:.1f} MB "
            f"in {time.perf_counter() - t:.1f} s"
        )

        t = time.perf_counter()
        pl.read_csv(csv)
        baseline = time.perf_counter() - t

        t = time.perf_counter()
        labels = read_label_file(csv, videos=videos, landing_root=root)
        imported = time.perf_counter() - t

        consensus = float("nan")
        if not args.skip_consensus:
            t = time.perf_counter()
            result = compute_consensus(labels, classes=classes, pred_probs=probs, frame_keys=keys)
            consensus = time.perf_counter() - t
            print(f"consensus method {result.method}, {result.frames.height:,} frames")

    print(f"{'step':<34}{'seconds':>10}")
    print(f"{'polars.read_csv (baseline)':<34}{baseline:>10.2f}")
    print(f"{'Lensline read_label_file':<34}{imported:>10.2f}")
    print(f"{'Lensline compute_consensus':<34}{consensus:>10.2f}")
    print(f"{'Lensline import + consensus':<34}{imported + consensus:>10.2f}   (target <= 30 s)")


if __name__ == "__main__":
    main()
