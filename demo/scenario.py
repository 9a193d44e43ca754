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
from typing import Any

import numpy as np
import polars as pl

DRIFT_VIDEOS = 4
"""Videos camera 1 records under its new look (of ~60 grid frames each, about a quarter show an
item: the labelled frames the queue can offer)."""
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


def render_shifted(
    landing: Path, *, seed: int, cameras: int, seconds: float, eval_dir: Path
) -> tuple[pl.DataFrame, dict[str, Path], dict[str, pl.DataFrame]]:
    """New videos per camera under its shifted conditions (:data:`DRIFT_VIDEOS` for camera 1,
    whose look changed: the line keeps running after the drift is detected) into the landing zone, and one more per camera kept out of it for evaluation.

    Returns the landed videos' ground truth and the evaluation videos with theirs.
    """
    from data_quality.video import video_id_for
    from demo import render_video

    truths, evals, eval_truth = [], {}, {}
    for c in range(cameras):
        camera = f"cam{c + 1}"
        name, _ = SHIFTS.get(camera, ("nominal", "unchanged"))
        n = DRIFT_VIDEOS if camera == "cam1" else 1
        for v in range(n + 1):
            landed = v < n
            path = (landing / "videos" / camera / f"shift_{v + 1:04d}.mp4") if landed else (
                eval_dir / f"{camera}_shift_eval.mp4")  # fmt: skip
            truth = render_video(
                path,
                seed=int(np.random.SeedSequence([seed, 1000 + c, v]).generate_state(1)[0]),
                camera_id=camera,
                seconds=seconds,
                conditions=_conditions(name),
            )
            if landed:
                truths.append(
                    truth.select("frame_index", "label").with_columns(
                        video_id=pl.lit(video_id_for(camera, path.name)), camera_id=pl.lit(camera)
                    )
                )
            else:
                evals[camera], eval_truth[camera] = path, truth.select("frame_index", "label")
    return pl.concat(truths), evals, eval_truth


def eval_accuracy(storage, version: str, videos: dict[str, Path], truth: dict[str, pl.DataFrame]):
    """Accuracy of registered model ``version`` on every labelled frame of the evaluation videos
    (rendered under the shifted conditions, never landed): ``{camera: (accuracy, frames)}``."""
    from training.checkpoint import checkpoint_spec, load_checkpoint

    registry = storage.registry()
    record = registry.get(version)
    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    return score_videos(model, json.loads(meta["classes"]), checkpoint_spec(meta), videos, truth)


def score_videos(model, classes: list[str], spec, videos: dict[str, Path], truth) -> dict:
    """``{camera: (accuracy, frames)}`` of ``model`` on every labelled frame of ``videos``."""
    import av

    from training.evaluate import predict_proba

    out = {}
    for camera, path in videos.items():
        labels = dict(truth[camera].filter(pl.col("label").is_in(classes)).iter_rows())
        frames, y = [], []
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in labels:
                    frames.append(frame.to_ndarray(format="bgr24"))
                    y.append(classes.index(labels[i]))
        if not frames:
            continue
        pred = predict_proba(model, spec.images(frames, [camera] * len(frames))).argmax(1)
        out[camera] = (float((pred == np.array(y)).mean()), len(frames))
    return out


@dataclass
class GatheredSets:
    """What a loop model was trained on, as arrays, and how: see :func:`gathered_sets`."""

    classes: list[str]
    spec: Any  # training.preprocess.PreprocessSpec
    config: dict[str, Any]  # the model's TrainConfig as a dict
    sets: dict[
        str, tuple[np.ndarray, np.ndarray, np.ndarray]
    ]  # name -> (images, labels, conditions)
    val: tuple[np.ndarray, np.ndarray, np.ndarray]

    def train(self, name: str, *, seed: int, videos, truth, **overrides: Any) -> dict:
        """Train from scratch on set ``name`` (the model's config, ``seed``, ``overrides``) and
        score on ``videos``: ``{camera: (accuracy, frames)}``."""
        from training.train import TrainConfig, train_model

        x, y, groups = self.sets[name]
        config = TrainConfig.from_dict({**self.config, **overrides, "seed": seed})
        x_va, y_va, _ = self.val
        res = train_model(
            x, y, classes=self.classes, config=config, groups=groups,
            val_images=x_va if len(x_va) else None, val_labels=y_va if len(y_va) else None,
        )  # fmt: skip
        return score_videos(res.model, self.classes, self.spec, videos, truth)


def gathered_sets(storage, version: str) -> GatheredSets:
    """The training sets behind registered model ``version``, with its config and preprocessing:

    * ``loop``: its curated train split (the drift-labelled videos' train share included), as
      ``trained_model`` read it;
    * ``all labels``: every label the loop gathered as if it had all been there from the start:
      the same plus the drifted frames the curated split holds out for the promotion gate.

    Both are selected on the same val split. Both train from scratch: for a warm-started model,
    with the epochs and learning rate of the newest model trained from scratch.
    """
    from lake.frames import drift_labelled_videos, load_frame_images
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import condition_slices

    registry = storage.registry()
    record = registry.get(version)
    _, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    classes, spec = json.loads(meta["classes"]), checkpoint_spec(meta)
    keys = ["video_id", "frame_index"]
    dataset = storage.read_table("dataset", version=record.dataset_version)
    dataset = dataset.filter(pl.col("label").is_in(classes)).sort(keys)
    drifted = drift_labelled_videos(storage)
    frames = storage.read_table("frames").select(*keys, "camera_id", "uri", "sha256")

    def arrays(rows: pl.DataFrame):
        rows = rows.join(frames, on=keys, maintain_order="left")
        y = rows["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
        cond = condition_slices(rows["camera_id"].to_list(), rows["video_id"].to_list(), drifted)
        return load_frame_images(storage, rows, spec), y, cond

    train = pl.col("split") == "train"
    held = pl.col("video_id").is_in(drifted) & (pl.col("split") == "test")
    return GatheredSets(
        classes=classes,
        spec=spec,
        config={
            **json.loads(meta["config"]),
            **_scratch_schedule(storage, meta),
            "init_checkpoint": None,
        },
        sets={
            "loop": arrays(dataset.filter(train)),
            "all labels": arrays(dataset.filter(train | held)),
        },
        val=arrays(dataset.filter(pl.col("split") == "val")),
    )


def _scratch_schedule(storage, meta) -> dict[str, Any]:
    """A warm start's epochs and learning rate are a short fine-tune's: trained from scratch
    with them a model is undertrained. For a warm-started model, the epochs and rate of the
    newest registered model trained from scratch (empty when the model was one, or none is)."""
    from training.checkpoint import load_checkpoint

    if not json.loads(meta["config"]).get("init_checkpoint"):
        return {}
    rows = storage.registry().list().sort("created_at", descending=True)
    for row in rows.iter_rows(named=True):
        local = storage.fetch_local([row["checkpoint_uri"]])[0]
        _, other = load_checkpoint(local, expected_sha256=row["checkpoint_sha256"])
        config = json.loads(other["config"])
        if not config.get("init_checkpoint"):
            return {"epochs": config["epochs"], "lr": config["lr"]}
    return {}


def all_labels_accuracy(
    storage, version: str, videos: dict[str, Path], truth, *, seeds: tuple[int, ...] = (0, 1, 2)
) -> dict[str, list[float]]:
    """The reference the loop is measured against: models trained from scratch with
    ``version``'s config and preprocessing on ``all labels`` (:func:`gathered_sets`).
    Returns ``{camera: [accuracy per seed]}`` on the evaluation videos."""
    sets = gathered_sets(storage, version)
    out: dict[str, list[float]] = {}
    for seed in seeds:
        for camera, (acc, _) in sets.train(
            "all labels", seed=seed, videos=videos, truth=truth
        ).items():
            out.setdefault(camera, []).append(acc)
    return out


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


def run_drift_scenario(
    args: argparse.Namespace, run: Callable[[], int], console, *, home: Path
) -> int:
    """After the baseline demo: shift the line, detect, label, retrain, rebuild the bundle."""
    from rich.table import Table

    from lake.storage import LensStorage

    storage = LensStorage()
    if storage.is_s3:
        console.print(
            "[red]--scenario drift renders into a local landing zone; unset LENSLINE_STORAGE[/]"
        )
        return 2
    tl = Timeline()
    landing = home / "landing"
    tl.add("baseline ready", "champion, edge bundle and drift references from the baseline demo")
    truth, eval_videos, eval_truth = render_shifted(
        landing, seed=args.seed + 1, cameras=args.cameras, seconds=args.seconds,
        eval_dir=home / "demo" / "eval",
    )  # fmt: skip
    shifted = sorted(truth["video_id"].unique().to_list())
    for c in range(args.cameras):
        cam = f"cam{c + 1}"
        tl.add(f"{cam}: new video", SHIFTS.get(cam, ("", "unchanged"))[1])
    console.rule("the line changed: new videos land")
    code = run()
    drift = storage.require_table("drift").filter(pl.col("video_id").is_in(shifted))
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
    registry = storage.registry()
    old_version = registry.champion().model_version  # type: ignore[union-attr]
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
    new_version = registry.champion().model_version  # type: ignore[union-attr]
    promoted = new_version != old_version
    why = "the challenger did not beat the champion"
    if promoted:  # the gate's reasons: it beats the champion, or ties it and has seen the new look
        events = registry.events().filter(
            (pl.col("model_version") == new_version) & (pl.col("event") == "promote")
        )
        tied = events.height and "ties it" in events.sort("seq")["reason"][-1]
        how = "tied the champion and has seen the new look" if tied else "beat the champion"
        why = f"the challenger {how} on the new test split"
    tl.add(f"champion {'promoted: ' + new_version if promoted else 'kept: ' + old_version}", why)
    bundles = storage.read_table("edge_bundles")
    mine = bundles.filter(pl.col("model_version") == new_version) if bundles is not None else None
    if mine is not None and mine.height:
        tl.add(f"edge bundle for {new_version}", mine["uri"][0])
    timeline = Table("t (s)", "what", "why", title="drift scenario timeline")
    for t, what, why in tl.events:
        timeline.add_row(f"{t:6.1f}", what, why)
    console.print(timeline)
    old_acc = eval_accuracy(storage, old_version, eval_videos, eval_truth)
    new_acc = eval_accuracy(storage, new_version, eval_videos, eval_truth)
    # the newest model trained with the drift labels, promoted or not: what the gate weighed
    latest = registry.list().sort("created_at").row(-1, named=True)["model_version"]
    chal_acc = eval_accuracy(storage, latest, eval_videos, eval_truth)
    console.rule("reference: the same training with every gathered label from the start")
    t0 = time.perf_counter()
    ref_acc = all_labels_accuracy(storage, latest, eval_videos, eval_truth)
    tl.add(
        "reference models trained",
        f"{len(next(iter(ref_acc.values()), []))} seeds, {time.perf_counter() - t0:.0f} s",
    )
    acc = Table("camera", "line now", "frames", f"old champion {old_version}", f"champion now {new_version}",
                f"latest challenger {latest}", "all labels from the start (seeds)", "champion - reference",
                title="accuracy on a new video of each camera under its shifted conditions (not landed)")  # fmt: skip
    for cam in sorted(old_acc):
        ref = ref_acc.get(cam, [float("nan")])
        acc.add_row(cam, SHIFTS.get(cam, ("", "unchanged"))[1], str(old_acc[cam][1]),
                    f"{old_acc[cam][0]:.3f}", f"{new_acc[cam][0]:.3f}", f"{chal_acc[cam][0]:.3f}",
                    f"{np.mean(ref):.3f} ({', '.join(f'{a:.3f}' for a in ref)})",
                    f"{new_acc[cam][0] - np.mean(ref):+.3f}")  # fmt: skip
    console.print(acc)
    if latest != new_version:
        console.print(
            f"[yellow]the challenger {latest} was not promoted[/]: see model_evaluation's "
            "decision and its vs_champion table; `lensline models promote` overrides it"
        )
    summary = {
        "old_champion": old_version,
        "champion": new_version,
        "latest_challenger": latest,
        "accuracy": {
            c: {
                "old": old_acc[c][0],
                "new": new_acc[c][0],
                "latest_challenger": chal_acc[c][0],
                "all_labels_from_start": ref_acc.get(c, []),
                "frames": old_acc[c][1],
            }  # fmt: skip
            for c in old_acc
        },
        "queued": n_queued,
        "labels": n,
        "timeline": [{"t_s": round(t, 1), "what": w, "why": y} for t, w, y in tl.events],
    }
    out = home / "demo" / "drift_scenario.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return code
