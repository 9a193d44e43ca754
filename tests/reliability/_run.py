"""``lensline run`` with a run config, for the fault-injection tests (run as a subprocess).

The CLI takes no run config, so this does exactly what ``orchestration.cli.cmd_run`` does —
``prepare_instance_home``, the home's writer lock, ``run_pending`` — with a small config (few
epochs) passed as JSON in ``RELIABILITY_RUN_CONFIG`` and a selection in ``RELIABILITY_SELECT`` (``RELIABILITY_DEFS=module:attr`` swaps in other
Definitions).
Prints one JSON line with the summary and exits with ``RunSummary.exit_code``.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from lake.storage import LensStorage, lensline_home
    from orchestration.instance_home import prepare_instance_home
    from orchestration.lock import home_lock
    from orchestration.runner import run_pending

    prepare_instance_home(lensline_home())
    import dagster as dg

    if os.environ.get("RELIABILITY_DEFS"):  # "module:attribute", e.g. a stand-in graph
        import importlib

        module, _, attr = os.environ["RELIABILITY_DEFS"].partition(":")
        defs = getattr(importlib.import_module(module), attr)
    else:
        from orchestration.definitions import defs

    select = os.environ.get("RELIABILITY_SELECT") or None
    run_config = json.loads(os.environ.get("RELIABILITY_RUN_CONFIG") or "{}")
    with home_lock(LensStorage()).hold(wait=True), dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, select=select, run_config=run_config)
    print(
        json.dumps(
            {
                "ingested": [[o.video_id, o.status, o.error] for o in summary.ingested],
                "downstream": summary.downstream,
                "downstream_ok": summary.downstream_ok,
                "step_failures": summary.step_failures,
                "failed_checks": summary.failed_checks,
                "recovered_runs": summary.recovered_runs,
                "rejected_labels": summary.rejected_labels,
                "stopped_reason": summary.stopped_reason,
                "exit_code": summary.exit_code,
            }
        ),
        flush=True,
    )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
