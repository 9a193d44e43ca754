"""Materialise one video partition through Dagster's multiprocess executor (run as a subprocess):
``python _ingest_one.py VIDEO_ID``. Prints a JSON line: success, step pids, step errors."""

from __future__ import annotations

import json
import os
import sys


def main(video_id: str) -> int:
    import dagster as dg

    from tests.production.celery_defs import ingest_video_job

    os.environ["LENSLINE_EXECUTOR"] = "multiprocess"
    with (
        dg.DagsterInstance.get() as instance,
        dg.execute_job(
            dg.reconstructable(ingest_video_job),
            instance,
            tags={"dagster/partition": video_id},
            raise_on_error=False,
        ) as result,
    ):
        out = {
            "success": result.success,
            "pids": sorted({e.pid for e in result.all_events if e.is_step_start}),
            "errors": [
                e.step_failure_data.error.message.strip().splitlines()[0]
                for e in result.all_events
                if e.is_step_failure and e.step_failure_data.error
            ],
        }
    print(json.dumps(out), flush=True)
    return 0 if out["success"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
