"""The code location loads, cheaply, with the graph the design promises."""

import subprocess
import sys

import dagster as dg


def test_definitions_load():
    from orchestration.definitions import defs

    defs.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_video", "frames"} <= keys
    assert defs.resolve_job_def("ingest_video")
    assert defs.resolve_sensor_def("new_video_sensor")


def test_import_is_cheap_and_has_no_heavy_modules():
    code = (
        "import sys, orchestration.definitions; "
        "heavy = [m for m in ('torch', 'fiftyone', 'cv2', 'av', 'cleanlab') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_workspace_yaml_points_at_definitions():
    import yaml

    with open("workspace.yaml") as fh:
        ws = yaml.safe_load(fh)
    assert ws["load_from"][0]["python_module"]["module_name"] == "orchestration.definitions"
    assert dg.__version__.startswith("1.13")


def test_instance_yaml_queues_runs_by_the_lakes_pools(tmp_path, monkeypatch):
    from lake.pools import ensure_pool_slots
    from orchestration.instance_home import PREVIOUS_INSTANCE_YAMLS, prepare_instance_home

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster/dagster.yaml").write_text(PREVIOUS_INSTANCE_YAMLS[0])  # an older home
    path = prepare_instance_home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        assert str(instance.root_directory) == str(path)
        config = instance.get_concurrency_config()
        assert config.pool_config.pool_granularity.value == "run"
        assert config.pool_config.default_pool_limit == 1
        # no global writer tag: one run per video (partition) at a time
        assert config.run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert ensure_pool_slots(instance) == {"lake_ingest": 8, "lake_graph": 1, "lake_fleet": 1}
        instance.event_log_storage.set_concurrency_slots("lake_ingest", 3)  # an operator's say
        assert ensure_pool_slots(instance)["lake_ingest"] == 3
