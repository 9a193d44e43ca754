"""No secret leaks: the whole graph runs with distinctive fake secrets in the environment, then
every place Lensline or Dagster writes is scanned for them; and every server Lensline starts
binds 127.0.0.1.

Secrets: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (the lake and artifacts are on a real
S3 endpoint, moto's server, which accepts any key), ``LENSLINE_PG_PASSWORD`` and a real Ed25519
``LENSLINE_SIGNING_KEY`` (the bundle is signed with it). Scanned: the run's stdout/stderr, every
Dagster event record (asset metadata, check results, logs, step failures) and every run's tags
and run config, every file under the home (SQLite instance, compute logs, the FiftyOne
database, caches), every object in the bucket (bytes, and the members of every ``.tar.gz``:
manifest, model card), and every row of every Delta table.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.reliability.harness import SMALL, print_table, record, run_env, summary_of

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIALENSLINELEAK0042",
    "AWS_SECRET_ACCESS_KEY": "lensline-s3cr3t-DO-NOT-LEAK-7f3a9c",
    "LENSLINE_PG_PASSWORD": "pg-p4ss-DO-NOT-LEAK-41c2",
}


def _needles(signing_pem: bytes) -> dict[str, bytes]:
    body = b"".join(line for line in signing_pem.splitlines() if b"-----" not in line)
    return {**{k: v.encode() for k, v in SECRETS.items()}, "LENSLINE_SIGNING_KEY": body}


def _hits(data: bytes, needles: dict[str, bytes]) -> list[str]:
    return [name for name, needle in needles.items() if needle in data]


@pytest.mark.slow
def test_whole_graph_leaks_no_secret_and_servers_bind_localhost(s3_env, home, tmp_path):
    import boto3
    import dagster as dg
    import psutil
    from dagster_shared.serdes import serialize_value

    from demo import make_demo_set
    from edge_export.bundle import generate_signing_key
    from lake.fiftyone_db import shutdown

    private, _public = generate_signing_key()
    needles = _needles(private)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    local = tmp_path / "landing"
    make_demo_set(local, seed=5, cameras=2, videos_per_camera=2, seconds=6.0)
    admin = boto3.client("s3")  # the fixture's credentials, to set up and to scan
    for path in local.rglob("*"):
        if path.is_file():
            admin.upload_file(str(path), bucket, f"plant-a/landing/{path.relative_to(local)}")

    env = run_env(home, select=None)
    env.update(SECRETS, LENSLINE_STORAGE=s3_env, LENSLINE_SIGNING_KEY=private.decode())
    env["RELIABILITY_RUN_CONFIG"] = json.dumps(SMALL)
    started = time.perf_counter()
    import subprocess
    import sys

    from tests.reliability.harness import RUNNER

    proc = subprocess.run(
        [sys.executable, str(RUNNER)], env=env, cwd=home, capture_output=True, timeout=600
    )
    run_s = time.perf_counter() - started
    outcomes = []
    try:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:].decode(errors="replace")
        summary = summary_of(proc.stdout.decode())
        print(summary)
        assert {"fiftyone_dataset", "edge_bundle", "model_evaluation"} <= set(summary["downstream"])
        outcomes.append(("stdout/stderr of the run", _hits(proc.stdout + proc.stderr, needles)))

        # Dagster: every event record of every run, every run's tags and config
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
        events, runs = [], 0
        with dg.DagsterInstance.get() as instance:
            for r in instance.get_runs():
                runs += 1
                events.append(json.dumps(r.tags) + json.dumps(r.run_config, default=str))
                events += [serialize_value(e) for e in instance.all_logs(r.run_id)]
        blob = "\n".join(events).encode()
        outcomes.append((f"Dagster event log ({len(events)} records, {runs} runs)", _hits(blob, needles)))  # fmt: skip

        # every file under the home: instance DBs, compute logs, FiftyOne's database, caches
        found, files = [], 0
        for path in home.rglob("*"):
            if path.is_file() and not path.is_symlink() and "journal" not in path.parts:
                files += 1
                found += [f"{path.relative_to(home)}: {h}" for h in _hits(path.read_bytes(), needles)]  # fmt: skip
        outcomes.append((f"files under LENSLINE_HOME ({files})", found))

        # every object in the bucket, and the members of bundles
        found, objects, tables = [], 0, {}
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                objects += 1
                data = admin.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                found += [f"{obj['Key']}: {h}" for h in _hits(data, needles)]
                if obj["Key"].endswith(".tar.gz"):
                    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                        for m in tar:
                            if m.isfile():
                                member = tar.extractfile(m).read()
                                found += [f"{obj['Key']}!{m.name}: {h}" for h in _hits(member, needles)]  # fmt: skip
                elif obj["Key"].endswith(".gz"):
                    found += [f"{obj['Key']} (gunzipped): {h}" for h in _hits(gzip.decompress(data), needles)]  # fmt: skip
                if "/_delta_log/" in obj["Key"]:
                    tables[obj["Key"].split("/lake/")[1].split("/")[0]] = True
        outcomes.append((f"S3 objects ({objects}), bundle members included", found))

        from lake.storage import LensStorage

        storage = LensStorage(root=s3_env)
        found, rows = [], 0
        for name in sorted(tables):
            df = storage.read_table(name)
            rows += df.height
            text = "\n".join(map(str, df.iter_rows())).encode()
            found += [f"{name}: {h}" for h in _hits(text, needles)]
        outcomes.append((f"Delta tables ({len(tables)}, {rows} rows)", found))
        bundles = storage.read_table("edge_bundles")
        assert bundles is not None and bundles["signed"].all()  # the key was used, not stored

        # servers: FiftyOne's mongod listens on 127.0.0.1 only; `lensline ui` binds 127.0.0.1.
        # On S3 the FiftyOne sync is skipped (it needs local frames), so the home's mongod is
        # started here the way the FiftyOne resource starts it
        from lake.fiftyone_db import configure

        configure(home)
        pid = int((home / "fiftyone" / "mongod.pid").read_text())
        listens = {
            c.laddr.ip
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        outcomes.append(("FiftyOne mongod listening addresses", sorted(listens)))
        assert listens == {"127.0.0.1"}
        ui = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "ui", "--fiftyone", "--dry-run"],
            env=env, cwd=home, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ui.returncode == 0, ui.stderr[-2000:]
        dev = next(line for line in ui.stdout.splitlines() if " dev " in line)
        outcomes.append(("`lensline ui` command line", dev.split(" dev ", 1)[1]))
        assert "-h 127.0.0.1" in dev
        app = Path("orchestration/fiftyone_app.py").read_text()
        assert 'address="127.0.0.1"' in app
    finally:
        shutdown(home=home)
    rows = [(where, "none" if found == [] else found) for where, found in outcomes]
    print_table(f"secrets scan (whole graph on S3 in {run_s:.0f}s)", rows, ("where", "secrets found"))  # fmt: skip
    record(tmp_path, "secrets", [{"where": w, "found": f} for w, f in rows])
    for where, found in outcomes[:5]:
        assert found == [], (where, found)
