"""A stand-in graph for the kill regression tests: the real ingest and labels assets plus a
``trained_model`` that counts its runs and SIGKILLs its own process while
``<home>/kill_in_training`` exists (a ``lensline run`` dying in the middle of the graph stage),
and a ``model_evaluation`` after it that does the same with ``<home>/kill_in_evaluation``;
while ``<home>/kill_after_videos_commit`` exists, the process SIGKILLs itself right after a
``videos`` commit (the lake complete, Dagster's events of the step not stored yet)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import dagster as dg

from assets.drift import drift_report
from assets.ingest import raw_video_and_frames
from assets.labels import label_reviews, labels
from lake.resources import FiftyOneResource
from lake.storage import LensStorage, lensline_home
from orchestration.automation import on_new_data
from orchestration.jobs import ingest_job


@dg.asset(deps=["labels"], group_name="models", automation_condition=on_new_data())
def trained_model() -> None:
    home = lensline_home()
    if (home / "kill_in_training").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    counter = Path(home / "trainings")
    counter.write_text(str(int(counter.read_text()) + 1) if counter.exists() else "1")


_write_table = LensStorage.write_table


def _write_then_die(self, df, name, **kw):
    version = _write_table(self, df, name, **kw)
    if name == "videos" and (lensline_home() / "kill_after_videos_commit").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return version


LensStorage.write_table = _write_then_die  # type: ignore[method-assign]


@dg.asset(deps=["trained_model"], group_name="models", automation_condition=on_new_data())
def model_evaluation() -> None:
    home = lensline_home()
    if (home / "kill_in_evaluation").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    counter = Path(home / "evaluations")
    counter.write_text(str(int(counter.read_text()) + 1) if counter.exists() else "1")


defs = dg.Definitions(
    assets=[
        raw_video_and_frames,
        drift_report,
        label_reviews,
        labels,
        trained_model,
        model_evaluation,
    ],
    jobs=[ingest_job],
    resources={"storage": LensStorage(), "fiftyone": FiftyOneResource()},
)
