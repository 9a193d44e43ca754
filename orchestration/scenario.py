"""``lensline demo --scenario drift``: the closed loop, end to end, on the demo line.

After the baseline demo (a champion, its edge bundle and every camera's drift reference), the
line changes: camera 1 gets gray gloves under dimmer light, camera 2 is knocked out of
position, camera 3 stays as it was. New video lands; ingestion tests each video against its
camera's reference; the drifted frames queued for labelling (``drift_queue``) are labelled by
the demo's simulated annotators (a label file in the landing zone, as a labelling team would
deliver it); the next run imports them, and labels -> dataset -> model -> evaluation ->
exports -> edge bundle follow. The timeline says what happened, why and how long it took.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

SHIFTS = {  # camera -> (conditions name, what changed on the line)
    "cam1": ("gray_gloves", "gray gloves and dimmer light"),
    "cam2": ("moved_camera", "camera knocked out of position"),
    "cam3": ("nominal", "unchanged"),
}


@dataclass
class Timeline:
    started: float = field(default_factory=time.perf_counter)
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, what: str, why: str) -> None:
        self.events.append((time.perf_counter() - self.started, what, why))


def _conditions(name: str):
    from demo import CONDITIONS

    cond = CONDITIONS[name]
    if name == "gray_gloves":  # gray gloves under dimmer light (brightness -30%)
        cond = replace(cond, name="gray_gloves_dim", brightness=0.7)
    return cond


def render_shifted(landing: Path, *, seed: int, cameras: int, seconds: float) -> pl.DataFrame:
    """Render one new video per camera under its shifted conditions; their ground truth."""
    from data_quality.video import video_id_for
    from demo import render_video

    truths = []
    for c in range(cameras):
        camera = f"cam{c + 1}"
        name, _ = SHIFTS.get(camera, ("nominal", "unchanged"))
        file = "shift_0001.mp4"
        truth = render_video(
            landing / "videos" / camera / file,
            seed=int(np.random.SeedSequence([seed, 1000 + c]).generate_state(1)[0]),
            camera_id=camera,
            seconds=seconds,
            conditions=_conditions(name),
        )
        truths.append(
            truth.select("frame_index", "label").with_columns(
                video_id=pl.lit(video_id_for(camera, file)), camera_id=pl.lit(camera)
            )
        )
    return pl.concat(truths)


def label_queue(storage, truth: pl.DataFrame, landing: Path, *, seed: int) -> int:
    """The demo's annotators label the queued frames; a label file lands. Returns its rows."""
    from demo import make_annotations

    queue = storage.read_table("drift_queue")
    if queue is None or queue.is_empty():
        return 0
    todo = queue.select("video_id", "frame_index").join(
        truth.filter(pl.col("label").is_not_null()), on=["video_id", "frame_index"]
    )
    parts = [
        make_annotations(group.select("frame_index", "label"), video=str(vid), seed=seed)
        for (vid,), group in todo.group_by("video_id", maintain_order=True)
    ]
    if not parts:
        return 0
    rows = pl.concat(parts)
    path = landing / "labels" / "drift_labels.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.write_csv(path)
    return rows.height


def champion_accuracy(storage, truth: pl.DataFrame, video_ids: list[str], *, exclude: pl.DataFrame):
    """(model_version, accuracy, frames) of the current champion on the shifted videos' sampled
    frames that carry ground truth, leaving out the frames that were labelled for training."""
    from assets.edge import load_champion
    from training.evaluate import predict_proba

    champion = load_champion(storage)
    frames = (
        storage.read_table("frames")
        .filter(pl.col("video_id").is_in(video_ids))
        .join(truth.filter(pl.col("label").is_in(champion.classes)), on=["video_id", "frame_index"])
        .join(exclude, on=["video_id", "frame_index"], how="anti")
        .sort("video_id", "frame_index")
    )
    if frames.is_empty():
        return champion.version, float("nan"), 0
    paths = storage.fetch_local(frames["uri"].to_list())
    images = champion.spec.images(paths, frames["camera_id"].to_list())  # type: ignore[attr-defined]
    pred = predict_proba(champion.model, images).argmax(1)
    y = np.array([champion.classes.index(v) for v in frames["label"]])
    return champion.version, float((pred == y).mean()), frames.height


def run_drift_scenario(
    args: argparse.Namespace, run: Callable[[], int], console, *, home: Path
) -> int:
    """After the baseline demo: shift the line, detect, label, retrain, rebuild the bundle."""
    from rich.table import Table

    from orchestration.storage import LensStorage

    storage = LensStorage()
    if storage.is_s3:
        console.print(
            "[red]--scenario drift renders into a local landing zone; unset LENSLINE_STORAGE[/]"
        )
        return 2
    tl = Timeline()
    landing = home / "landing"
    tl.add("baseline ready", "champion, edge bundle and drift references from the baseline demo")
    truth = render_shifted(landing, seed=args.seed + 1, cameras=args.cameras, seconds=args.seconds)
    shifted = sorted(truth["video_id"].unique().to_list())
    for c in range(args.cameras):
        cam = f"cam{c + 1}"
        tl.add(f"{cam}: new video", SHIFTS.get(cam, ("", "unchanged"))[1])
    console.rule("the line changed: new videos land")
    code = run()
    drift = storage.read_table("drift").filter(pl.col("video_id").is_in(shifted))
    table = Table("video", "data", "viewpoint", "prediction", "drifted statistics", title="drift")
    for (vid,), rows in drift.group_by("video_id", maintain_order=True):
        verdict = {k: ("DRIFT" if rows.filter((pl.col("kind") == k) & pl.col("drifted")).height else "ok")
                   for k in ("data", "viewpoint", "prediction")}  # fmt: skip
        stats = ", ".join(rows.filter(pl.col("drifted"))["statistic"].to_list())
        table.add_row(str(vid), *verdict.values(), stats or "-")
        tl.add(
            f"{vid}: drift {'detected' if stats else 'none'}",
            stats or "all tests within the reference",
        )
    console.print(table)
    old = champion_accuracy(
        storage,
        truth,
        shifted,
        exclude=pl.DataFrame(schema={"video_id": pl.String, "frame_index": pl.Int64}),
    )
    queued = storage.read_table("drift_queue")
    n_queued = queued.height if queued is not None else 0
    tl.add(
        f"{n_queued} frames queued for labels",
        "most uncertain and most novel frames of data/prediction-drifted videos (viewpoint shifts ask for a new reference instead)",
    )
    n = label_queue(storage, truth, landing, seed=args.seed)
    tl.add(
        f"{n} labels delivered",
        "the demo's annotators labelled the queued frames (landing/labels/drift_labels.csv)",
    )
    console.rule("labels for the drifted frames arrive: the lineage graph rematerialises")
    code = max(code, run())
    labelled = (queued.select("video_id", "frame_index") if queued is not None
                else pl.DataFrame(schema={"video_id": pl.String, "frame_index": pl.Int64}))  # fmt: skip
    old_on_held_out = champion_accuracy_of(storage, old[0], truth, shifted, exclude=labelled)
    new = champion_accuracy(storage, truth, shifted, exclude=labelled)
    promoted = new[0] != old[0]
    tl.add(
        f"champion {'promoted: ' + new[0] if promoted else 'kept: ' + old[0]}",
        "the challenger beat the champion on the new test split"
        if promoted
        else "the challenger did not beat the champion",
    )
    bundles = storage.read_table("edge_bundles")
    if bundles is not None and bundles.filter(pl.col("model_version") == new[0]).height:
        tl.add(
            f"edge bundle for {new[0]}", bundles.filter(pl.col("model_version") == new[0])["uri"][0]
        )
    timeline = Table("t (s)", "what", "why", title="drift scenario timeline")
    for t, what, why in tl.events:
        timeline.add_row(f"{t:6.1f}", what, why)
    console.print(timeline)
    console.print(
        f"accuracy on the shifted videos' held-out frames ({new[2]} frames): "
        f"old champion {old[0]} {old_on_held_out:.3f} -> champion now {new[0]} {new[1]:.3f}"
    )
    summary = {"old_champion": old[0], "old_accuracy": old_on_held_out, "champion": new[0],
               "accuracy": new[1], "frames": new[2], "queued": n_queued, "labels": n}  # fmt: skip
    out = home / "demo" / "drift_scenario.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return code


def champion_accuracy_of(storage, version: str, truth, video_ids, *, exclude) -> float:
    """Accuracy of registered model ``version`` on the same frames as :func:`champion_accuracy`."""
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import predict_proba
    from training.registry import ModelRegistry

    record = ModelRegistry(
        storage.table_uri("models"), storage_options=storage.storage_options()
    ).get(version)
    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    classes, spec = json.loads(meta["classes"]), checkpoint_spec(meta)
    frames = (
        storage.read_table("frames")
        .filter(pl.col("video_id").is_in(video_ids))
        .join(truth.filter(pl.col("label").is_in(classes)), on=["video_id", "frame_index"])
        .join(exclude, on=["video_id", "frame_index"], how="anti")
        .sort("video_id", "frame_index")
    )
    if frames.is_empty():
        return float("nan")
    images = spec.images(
        storage.fetch_local(frames["uri"].to_list()), frames["camera_id"].to_list()
    )
    pred = predict_proba(model, images).argmax(1)
    return float((pred == np.array([classes.index(v) for v in frames["label"]])).mean())
