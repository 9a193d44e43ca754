"""deploy/k8s: the Helm values and the k8s_job_executor run config parse and say what we rely on."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
GPU_STEPS = {"frame_embeddings", "trained_model", "model_evaluation", "tensorrt_engine"}


def test_helm_values():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    code = values["dagster-user-deployments"]["deployments"][0]
    assert code["dagsterApiGrpcArgs"] == ["-m", "orchestration.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    # the same queue rules as the embedded dagster.yaml: the lake's pools, admitted per run
    assert values["concurrency"]["pools"] == {"granularity": "run", "defaultLimit": 1}
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == 20
    [per_video] = values["concurrency"]["runs"]["tagConcurrencyLimits"]
    assert per_video == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert "postgresqlPassword" not in values["postgresql"]  # from the Secret only
    assert values["global"]["postgresqlSecretName"]


def test_gpu_steps_in_run_config():
    config = yaml.safe_load((DEPLOY / "run-config.yaml").read_text())["execution"]["config"]
    steps = config["step_k8s_config"]
    assert set(steps) == GPU_STEPS
    for step in steps.values():
        assert step["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert step["pod_spec_config"]["node_selector"]
