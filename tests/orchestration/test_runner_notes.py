"""lensline run reports a passed promotion gate's unprotected conditions as notes."""

import dagster as dg

from orchestration.run_report import RunSummary, collect

LINE = "unprotected: cam1/drift: 28 frames, could miss a drop of 34.5 points"


@dg.asset(check_specs=[dg.AssetCheckSpec("promotion_gate", asset="model_evaluation")])
def model_evaluation():
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="promotion_gate",
                passed=True,
                metadata={"reasons": "promoted\n" + LINE, "unprotected": [LINE]},
            )
        ]
    )


def test_a_passed_gate_with_unprotected_conditions_leaves_a_note():
    summary = RunSummary()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([model_evaluation], instance=instance)
        assert collect(instance, result.run_id, summary) == []  # read from the stored events
        assert summary.failed_checks == []
        assert summary.check_notes == [f"model_evaluation/promotion_gate: {LINE}"]
