"""Item presence (issue 20): how well ingestion's presence score finds the frames that show an
item, what it costs, and what it does to the drift labelling queue.

Reproduce (repo root, 2 cores)::

    # 1. the score against the demo renderer's ground truth, and its cost (~1 minute; with
    #    --conditions also under each demo condition, ~1 more)
    nice -n 19 python benchmarks/presence.py --conditions

    # 2. also the drift queue before / after, on a finished drift scenario (its 5-15 minutes)
    export LENSLINE_HOME=/tmp/drift-home
    lensline demo --cameras 3 --videos-per-camera 2 --seconds 30 --scenario drift
    nice -n 19 python benchmarks/presence.py --home $LENSLINE_HOME

Part 1 renders the drift scenario's new videos (``demo.scenario.render_shifted``, the seed the
scenario uses) and samples each as ingestion does (``data_quality.ingest.sample_video``), with
and without presence scoring: precision and recall of ``item_present`` against the renderer's
truth (an item's centre in the central window: the frames the demo's annotators can label),
per condition, and the scoring's share of sampling time (the best of ``--repeats`` runs each
way, alternated).

Part 2 reads the scenario's lake: today's queue is its ``drift_queue`` (written before presence
existed, or with it: the table says which frames were queued); the queue with presence is
rebuilt with ``drift_queue_rows`` for the same videos, the same champion (the reference version
the ``drift`` rows name), its embeddings and probabilities, the same budget and drift verdicts,
once with ``empty_share`` 0 (the default) and once with 0.1. It prints the share of queued frames
that show an item (truth) for each.

Measured (2026-12-07, 2 cores shared with another benchmark): see docs/drift.md "Item presence".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

KEYS = ["video_id", "frame_index"]


class Timed:
    """Wraps a function and adds up the seconds its calls take (on any thread)."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def sample_all(videos: dict[str, Path], labeled: dict[str, set[int]], repeats: int):
    """``{video_id: frames with item_presence}``; the wall and CPU seconds sampling took without
    and with presence scoring (the best of ``repeats`` each, summed over videos); and the
    seconds inside presence's own calls (thumbnails, scores) in one scored pass."""
    from data_quality import presence
    from data_quality.ingest import sample_video

    out, wall, cpu = {}, {False: 0.0, True: 0.0}, {False: 0.0, True: 0.0}
    for video_id, path in videos.items():
        keep = labeled.get(video_id, set())
        best_wall = {False: np.inf, True: np.inf}
        best_cpu = {False: np.inf, True: np.inf}
        for _ in range(repeats):
            for flag in (False, True):
                t0, c0 = time.perf_counter(), time.process_time()
                sampled = sample_video(path, name=str(path), labeled=keep, score_presence=flag)
                best_wall[flag] = min(best_wall[flag], time.perf_counter() - t0)
                best_cpu[flag] = min(best_cpu[flag], time.process_time() - c0)
        for flag in (False, True):
            wall[flag] += best_wall[flag]
            cpu[flag] += best_cpu[flag]
        out[video_id] = pl.DataFrame(
            {
                "video_id": video_id,
                "frame_index": [f.frame_index for f in sampled.frames],
                "item_presence": list(sampled.presence),
            }
        ).with_columns(item_present=pl.col("item_presence") >= 0.5)
    thumbs, scores = Timed(presence.thumbnail), Timed(presence.presence_scores)
    presence.thumbnail, presence.presence_scores = thumbs, scores  # type: ignore[assignment]
    try:
        for video_id, path in videos.items():
            sample_video(path, name=str(path), labeled=labeled.get(video_id, set()))
    finally:
        presence.thumbnail, presence.presence_scores = thumbs.fn, scores.fn
    return out, wall, cpu, (thumbs.seconds, scores.seconds, thumbs.calls)


def precision_recall(rows: pl.DataFrame) -> tuple[float, float, int, int]:
    """Precision and recall of ``item_present`` against ``item`` (truth), frames, items."""
    pred, item = rows["item_present"].to_numpy(), rows["item"].to_numpy()
    tp = int((pred & item).sum())
    return tp / max(int(pred.sum()), 1), tp / max(int(item.sum()), 1), rows.height, int(item.sum())


def rebuilt_queues(
    storage, presence: dict[str, pl.DataFrame], shares: tuple[float, ...], *, budget: int
):
    """The drift queue of every queued video, rebuilt with ``presence`` (``{video_id: frame_index,
    item_presence, item_present}``): ``{share: rows}``."""
    import json
    from datetime import UTC, datetime

    from assets.champion import Champion
    from assets.drift import _bgr_frames, _scores, grid_frames, load_reference
    from data_quality.drift.per_camera import drift_queue_rows
    from lake.frames import video_frames
    from training.checkpoint import checkpoint_spec, load_checkpoint

    queue = storage.require_table("drift_queue")
    drift = storage.require_table("drift")
    registry = storage.registry()
    champions: dict[str, Champion] = {}
    out: dict[float, list[pl.DataFrame]] = {s: [] for s in shares}
    for video_id in queue["video_id"].unique().sort().to_list():
        rows = drift.filter(pl.col("video_id") == video_id)
        version = rows["reference_version"][0]
        if version not in champions:
            record = registry.get(version)
            model, meta = load_checkpoint(
                storage.fetch_local([record.checkpoint_uri])[0],
                expected_sha256=record.checkpoint_sha256,
            )
            champions[version] = Champion(record, model, json.loads(meta["classes"]),
                                          checkpoint_spec(meta))  # fmt: skip
        champion = champions[version]
        frames = grid_frames(storage, video_frames(storage, video_id)).sort("frame_index")
        frames = frames.drop("item_presence", "item_present").join(
            presence[video_id].drop("video_id"), on="frame_index", how="left"
        )
        camera = frames["camera_id"][0]
        reference = load_reference(storage, camera, version)
        emb, probs = _scores(champion, _bgr_frames(storage, frames), frames["camera_id"].to_list())
        kinds = rows.filter(pl.col("drifted"))["kind"].unique().to_list()
        for share in shares:
            out[share].append(
                drift_queue_rows(
                    frames,
                    kinds,
                    emb,
                    probs,
                    reference.embeddings,
                    budget=budget,
                    now=datetime.now(UTC),
                    empty_share=share,
                )  # fmt: skip
            )
    return {s: pl.concat(parts) for s, parts in out.items()}


def every_condition(seconds: float = 20.0) -> None:
    """Precision and recall under each of the demo's conditions (two cameras' videos each)."""
    from data_quality.ingest import sample_video
    from demo import CONDITIONS, render_video

    print(f"\n{'condition':<16}{'frames':>7}{'items':>7}{'precision':>11}{'recall':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for condition in CONDITIONS:
            parts = []
            for camera, seed in (("cam1", 12), ("cam2", 7)):
                path = Path(tmp) / f"{condition}_{camera}.mp4"
                truth = render_video(path, seed=seed, camera_id=camera, seconds=seconds,
                                     conditions=condition)  # fmt: skip
                sampled = sample_video(path, name=str(path))
                parts.append(
                    pl.DataFrame(
                        {"frame_index": [f.frame_index for f in sampled.frames],
                         "item_present": np.asarray(sampled.presence) >= 0.5}
                    ).join(truth.select("frame_index", item=pl.col("label").is_not_null()),
                           on="frame_index")
                )  # fmt: skip
            p, r, n, k = precision_recall(pl.concat(parts))
            print(f"{condition:<16}{n:>7}{k:>7}{p:>11.3f}{r:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="LENSLINE_HOME of a finished drift scenario (part 2)")
    parser.add_argument("--scenario-seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument("--seconds", type=float, default=30.0, help="the demo's --seconds")
    parser.add_argument("--cameras", type=int, default=3, help="the demo's --cameras")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs each way")
    parser.add_argument("--budget", type=int, default=60, help="the scenario's label budget")
    parser.add_argument(
        "--conditions", action="store_true", help="also every demo condition (~1 minute)"
    )
    args = parser.parse_args()
    if args.home:
        os.environ["LENSLINE_HOME"] = args.home
        os.environ.pop("LENSLINE_STORAGE", None)

    from data_quality.video import video_id_for
    from demo.scenario import SHIFTS, render_shifted

    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        truth, _, _ = render_shifted(landing, seed=args.scenario_seed + 1, cameras=args.cameras,
                                     seconds=args.seconds, eval_dir=Path(tmp) / "eval")  # fmt: skip
        truth = truth.with_columns(item=pl.col("label").is_not_null())
        videos = {
            video_id_for(p.parent.name, p.name): p
            for p in sorted((landing / "videos").glob("*/*.mp4"))
        }
        labeled: dict[str, set[int]] = {}
        storage = None
        if args.home:
            from lake.storage import LensStorage

            storage = LensStorage()
            lake = storage.require_table("frames", columns=[*KEYS, "labeled"])
            for (vid,), g in lake.filter(pl.col("labeled")).group_by("video_id"):
                labeled[str(vid)] = set(g["frame_index"].to_list())
        sampled, wall, cpu, (thumb_s, score_s, n_frames) = sample_all(videos, labeled, args.repeats)
    rows = pl.concat(sampled.values()).join(truth.select(*KEYS, "camera_id", "item"), on=KEYS)
    print(f"drift scenario videos (seed {args.scenario_seed + 1}, {args.seconds:g} s): "
          f"{len(videos)} videos, {rows.height} sampled frames\n")  # fmt: skip
    print(f"{'camera':<8}{'line now':<34}{'frames':>7}{'items':>7}{'precision':>11}{'recall':>8}")
    for (camera,), g in rows.sort("camera_id").group_by("camera_id", maintain_order=True):
        p, r, n, k = precision_recall(g)
        print(f"{camera:<8}{SHIFTS.get(str(camera), ('', 'unchanged'))[1]:<34}{n:>7}{k:>7}"
              f"{p:>11.3f}{r:>8.3f}")  # fmt: skip
    p, r, n, k = precision_recall(rows)
    print(f"{'all':<42}{n:>7}{k:>7}{p:>11.3f}{r:>8.3f}")
    print(f"\nsampling {len(videos)} videos (best of {args.repeats} each way, summed):")
    for name, t in (("wall", wall), ("CPU", cpu)):
        print(f"  {name:>4}: {t[False]:.3f} s without presence, {t[True]:.3f} s with "
              f"({100 * (t[True] - t[False]) / t[False]:+.1f} %)")  # fmt: skip
    print(f"  presence's own calls: thumbnails {1000 * thumb_s / n_frames:.3f} ms a frame "
          f"({n_frames} frames, on the JPEG workers), scores {1000 * score_s / len(videos):.1f} "
          f"ms a video; together {100 * (thumb_s + score_s) / wall[False]:.1f} % of the "
          f"sampling wall time without presence")  # fmt: skip
    if args.conditions:
        every_condition()
    if storage is None:
        return
    today = storage.require_table("drift_queue").select(*KEYS)
    print(f"\ndrift queue of {args.home} (truth: an item's centre in the central window)")
    print(f"{'queue':<40}{'frames':>7}{'with an item':>14}{'share':>8}")

    def line(name: str, queue: pl.DataFrame) -> None:
        items = queue.select(*KEYS).join(truth.select(*KEYS, "item"), on=KEYS, how="left")
        k = int(items["item"].fill_null(False).sum())
        print(f"{name:<40}{queue.height:>7}{k:>14}{k / max(queue.height, 1):>8.3f}")

    line("today (the scenario's drift_queue)", today)
    for share, queue in rebuilt_queues(storage, sampled, (0.0, 0.1), budget=args.budget).items():
        line(f"with presence, empty_share={share:g}", queue)


if __name__ == "__main__":
    main()
