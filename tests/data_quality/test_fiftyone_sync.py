"""FiftyOne sync against a real mongod under a temp LENSLINE_HOME (no mocks; ``fo_home`` in tests/conftest.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from data_quality import fiftyone_sync as fos

CLASSES = ["good", "defect"]


def _images(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"f{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p, quality=70)
        paths.append(str(p))
    return paths


def _frame(paths: list[str], *, videos: int = 2) -> pl.DataFrame:
    n = len(paths)
    i = np.arange(n)
    gt = np.where(i % 3 == 0, "defect", "good")
    return pl.DataFrame(
        {
            "filepath": paths,
            "video_id": [f"v{k % videos}" for k in range(n)],
            "frame_index": (i // videos).tolist(),
            "camera_id": ["cam-a"] * n,
            "ground_truth": [None if k == 1 else g for k, g in enumerate(gt)],
            "consensus": gt.tolist(),
            "annotator_alice": gt.tolist(),
            "annotator_bob": np.where(i % 7 == 0, "good", gt).tolist(),
            "label_quality": np.linspace(0, 1, n).tolist(),
            "is_label_issue": (i % 10 == 0).tolist(),
            "suggested_label": np.where(i % 10 == 0, "good", gt).tolist(),
            "is_outlier": (i == 5).tolist(),
            "is_near_duplicate": np.isin(i, [6, 7, 8]).tolist(),
            "near_duplicate_set": [1 if k in (6, 7, 8) else None for k in range(n)],
            "is_dark": (i == 11).tolist(),
            "is_blurry": np.isin(i, [11, 12]).tolist(),
            "brightness": np.linspace(10, 200, n).tolist(),
            "sharpness": np.linspace(1, 50, n).tolist(),
            "split": np.where(i % 5 == 0, "val", "train").tolist(),
            "prediction": gt.tolist(),
            "prediction_confidence": np.full(n, 0.9).tolist(),
            "is_drifted": (i == 20).tolist(),
        }
    )


def test_sync_views_corrections(fo_home, tmp_path):
    import fiftyone as fo

    df = _frame(_images(tmp_path / "img", 50))
    counts = fos.sync_samples("qc", df, classes=CLASSES, info={"dataset_version": 3})
    assert counts == {"added": 50, "updated": 0, "removed": 0, "unchanged": 0}

    ds = fo.load_dataset("qc")
    assert ds.persistent and ds.default_classes == CLASSES and len(ds) == 50
    assert ds.info["lensline"]["dataset_version"] == 3
    s = ds.one((fo.ViewField("video_id") == "v0") & (fo.ViewField("frame_index") == 0))
    assert s.ground_truth.label == "defect" and s.predictions.confidence == pytest.approx(0.9)
    assert s.annotator_bob.label == "good" and s.is_label_issue is True
    assert set(s.tags) == {"label_issue"}
    assert ds.count_sample_tags() == {
        "label_issue": 5,
        "outlier": 1,
        "near_duplicate": 3,
        "dark": 1,
        "blurry": 2,
        "drifted": 1,
    }
    assert ds.match(fo.ViewField("ground_truth") == None).count() == 1  # noqa: E711

    assert fos.sync_samples("qc", df, classes=CLASSES)["unchanged"] == 50  # idempotent

    # one row relabelled + flag cleared, two rows gone, one new frame
    changed = df.with_columns(
        pl.when(pl.col("frame_index").eq(0) & pl.col("video_id").eq("v0"))
        .then(pl.lit("good"))
        .otherwise(pl.col("ground_truth"))
        .alias("ground_truth"),
        pl.when(pl.col("frame_index").eq(0) & pl.col("video_id").eq("v0"))
        .then(False)
        .otherwise(pl.col("is_label_issue"))
        .alias("is_label_issue"),
    ).filter(pl.col("frame_index") != 24)
    extra = changed.head(1).with_columns(pl.lit(99, pl.Int64).alias("frame_index"))
    counts = fos.sync_samples("qc", pl.concat([changed, extra]), classes=CLASSES)
    assert counts == {"added": 1, "updated": 1, "removed": 2, "unchanged": 47}
    s.reload()
    assert s.ground_truth.label == "good" and s.tags == [] and s.is_label_issue is False
    assert len(ds) == 49 and not ds.match(fo.ViewField("frame_index") == 24).count()

    assert fos.ensure_saved_views("qc") == ["label_issues", "near_duplicates", "low_quality"]
    assert fos.ensure_saved_views("qc") == list(fos.SAVED_VIEWS)  # replace, not duplicate
    assert sorted(ds.list_saved_views()) == sorted(fos.SAVED_VIEWS)
    assert len(ds.load_saved_view("label_issues")) == 4
    assert len(ds.load_saved_view("near_duplicates")) == 3
    assert len(ds.load_saved_view("low_quality")) == 3  # outlier 5, dark+blurry 11, blurry 12

    # reviewers: edit a label through the Python API, tag another "relabel", a third "ok"
    assert fos.pull_corrections("qc").is_empty()
    before = datetime.now(UTC)
    edited = ds.one((fo.ViewField("video_id") == "v1") & (fo.ViewField("frame_index") == 0))
    edited.ground_truth = fo.Classification(label="defect")
    edited.save()
    relabel = ds.one((fo.ViewField("video_id") == "v0") & (fo.ViewField("frame_index") == 2))
    relabel.tags.append("relabel")
    relabel.ground_truth.label = "defect"
    relabel.save()
    ok = ds.one((fo.ViewField("video_id") == "v0") & (fo.ViewField("frame_index") == 5))
    ok.tags.append("ok")
    ok.save()

    got = fos.pull_corrections("qc")
    assert got.schema == pl.Schema(fos.CORRECTION_COLUMNS)
    assert got.select("video_id", "frame_index", "label").rows() == [
        ("v0", 2, "defect"),
        ("v0", 5, "good"),
        ("v1", 0, "defect"),
    ]
    assert set(got["annotator"]) == {"review"} and set(got["source"]) == {"fiftyone:qc"}
    assert got["reviewed_at"].min() >= before - timedelta(seconds=1)
    assert fos.pull_corrections("qc", since=datetime.now(UTC)).is_empty()

    # a re-sync that updates every row keeps the pending corrections
    bumped = pl.concat([changed, extra]).with_columns(pl.col("brightness") + 1)
    assert fos.sync_samples("qc", bumped, classes=CLASSES)["updated"] == 49
    assert fos.pull_corrections("qc").drop("reviewed_at").equals(got.drop("reviewed_at"))

    fos.mark_corrections_imported("qc", got)
    assert fos.pull_corrections("qc").is_empty()
    relabel.reload()
    assert "relabel" not in relabel.tags and "imported" in relabel.tags


def test_rejects_bad_input(fo_home, tmp_path):
    df = _frame(_images(tmp_path / "img", 4))
    with pytest.raises(ValueError, match="not in classes"):
        fos.sync_samples("bad", df, classes=["good"])
    with pytest.raises(ValueError, match="unique"):
        fos.sync_samples("bad", pl.concat([df, df]), classes=CLASSES)
    with pytest.raises(ValueError, match="annotator columns"):
        fos.sync_samples("bad", df, classes=CLASSES, annotators=["carol"])
    fos.sync_samples("bad", df, classes=CLASSES, persistent=False)
    with pytest.raises(ValueError, match="field 'brightness'"):
        fos.sync_samples(
            "bad", df.with_columns(pl.col("brightness").cast(pl.String)), classes=CLASSES
        )


@pytest.mark.slow
def test_sync_10k_timing(fo_home, tmp_path):
    """Bulk path: 10k samples (images need not exist to be registered)."""
    n = 10_000
    paths = [str(tmp_path / f"x{i}.jpg") for i in range(n)]
    df = _frame(paths, videos=20)
    t0 = time.perf_counter()
    assert fos.sync_samples("big", df, classes=CLASSES, persistent=False)["added"] == n
    t1 = time.perf_counter()
    assert fos.sync_samples("big", df, classes=CLASSES, persistent=False)["unchanged"] == n
    t2 = time.perf_counter()
    df2 = df.with_columns((pl.col("brightness") + 1).alias("brightness"))
    assert fos.sync_samples("big", df2, classes=CLASSES, persistent=False)["updated"] == n
    t3 = time.perf_counter()
    print(
        f"\n10k samples: add {t1 - t0:.1f}s, no-op re-sync {t2 - t1:.1f}s, update all {t3 - t2:.1f}s"
    )


def test_many_annotators_become_one_list_field(fo_home, tmp_path):
    """Above ANNOTATOR_FIELDS_MAX annotators: one ``annotations`` field, incremental re-sync."""
    import fiftyone as fo

    df = _frame(_images(tmp_path / "img", 30)).drop("annotator_alice", "annotator_bob")
    assert fos.sync_samples("crowd", df, classes=CLASSES, annotations=None)["added"] == 30
    rng = np.random.default_rng(1)
    who = [f"w{i:02d}" for i in range(fos.ANNOTATOR_FIELDS_MAX + 4)]
    long = pl.DataFrame(
        {
            "video_id": np.repeat(df["video_id"].to_numpy(), 3),
            "frame_index": np.repeat(df["frame_index"].to_numpy(), 3),
            "annotator": [who[(3 * i + j) % len(who)] for i in range(30) for j in range(3)],
            "label": rng.choice(CLASSES, 90).tolist(),
        }
    )
    # the wide form of the same labels is turned into the list field too
    wide = df.join(
        long.pivot(on="annotator", index=["video_id", "frame_index"], values="label").rename(
            {w: f"annotator_{w}" for w in who}
        ),
        on=["video_id", "frame_index"],
    )
    counts = fos.sync_samples("crowd", wide, classes=CLASSES)
    assert counts == {"added": 0, "updated": 30, "removed": 0, "unchanged": 0}
    assert fos.sync_samples("crowd", df, classes=CLASSES, annotations=long)["unchanged"] == 30

    ds = fo.load_dataset("crowd")
    schema = ds.get_field_schema()
    assert "annotations" in schema and not [f for f in schema if f.startswith("annotator_")]
    s = ds.one((fo.ViewField("video_id") == "v1") & (fo.ViewField("frame_index") == 0))
    got = [(c.annotator, c.label) for c in s.annotations.classifications]
    want = long.filter(pl.col("video_id") == "v1", pl.col("frame_index") == 0).sort("annotator")
    assert got == list(zip(want["annotator"], want["label"], strict=True))
    assert sum(ds.count_values("annotations.classifications.annotator").values()) == 90

    changed = long.with_columns(
        label=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("defect")).otherwise("label")
    )
    if changed["label"][0] == long["label"][0]:
        changed = changed.with_columns(
            label=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("good")).otherwise("label")
        )
    assert fos.sync_samples("crowd", df, classes=CLASSES, annotations=changed)["updated"] == 1
    # back to few annotators: per-annotator fields again, the list field gone
    few = long.filter(pl.col("annotator").is_in(who[:2]))
    fos.sync_samples("crowd", df, classes=CLASSES, annotations=few)
    schema = fo.load_dataset("crowd").get_field_schema()
    assert "annotations" not in schema and {"annotator_w00", "annotator_w01"} <= set(schema)


def test_inserted_documents_read_back_as_fiftyone_samples(fo_home, tmp_path):
    """The bulk insert writes what FiftyOne's own add_samples writes (same fields, same values)."""
    import fiftyone as fo

    df = _frame(_images(tmp_path / "img", 12))
    fos.sync_samples("raw", df, classes=CLASSES)
    ds = fo.load_dataset("raw")
    ref = fo.Dataset()
    ref.add_samples([s.copy() for s in ds], progress=False)  # through mongoengine documents
    ours, theirs = ds.first().to_dict(), ref.first().to_dict()
    for d in (ours, theirs):
        for k in ("_id", "created_at", "last_modified_at", "_dataset_id", "_rand"):
            d.pop(k, None)
        for v in d.values():
            if isinstance(v, dict):
                v.pop("_id", None)
    assert ours == theirs
    assert len(ds.take(5, seed=0)) == 5 and ds.count("ground_truth") == 11
