"""The Lensline definitions with ``lensline_executor`` wired in, as definitions.py will have them;
a module the Celery worker imports to rebuild the job (a reconstructable pointer)."""

import dagster as dg

from orchestration.definitions import defs as lensline_defs
from orchestration.executors import lensline_executor

defs = dg.Definitions.merge(lensline_defs, dg.Definitions(executor=lensline_executor))


def ingest_video_job() -> dg.JobDefinition:
    return defs.resolve_job_def("ingest_video")
