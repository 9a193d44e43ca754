"""Complete lineage (issue 16): every lake table an asset reads is written by that asset or by
one of its upstream assets, so the Dagster UI's lineage is the real one.

The test walks the Definitions: for each asset it reads the source of its compute function and,
transitively, of every project function and class that function names (``lake.frames``'s
reads, the champion loader, ...), and collects the Delta tables read (``read_table``,
``require_table``, ``table_version``, ``table_uri``) and written (``write_table``,
``delete_rows``). A table read by an asset must be written by the asset itself or by an asset
upstream of it, or be listed in :data:`READ_ACROSS` with the reason it cannot be declared.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types

import dagster as dg

from orchestration.definitions import defs

PROJECT = ("assets", "lake", "training", "data_quality", "edge_export")
READS = {"read_table", "require_table", "table_version", "table_uri"}
WRITES = {"write_table", "delete_rows"}
#: training.registry.ModelRegistry writes its table (``models``) through deltalake itself
REGISTRY_WRITES = {"register_challenger", "promote", "archive", "rollback"}

#: (asset, table) read against the lineage, and why it cannot be a declared dependency.
READ_ACROSS: dict[tuple[str, str], str] = {
    # the drift loop closes here: drift_report (downstream of model_evaluation) queues
    # drifted frames for labels; curation and training only ask which videos were queued, to
    # keep them apart as their own line condition. Declaring it would close a cycle.
    ("curated_dataset", "drift_queue"): "drift loop: queued videos split apart",
    ("trained_model", "drift_queue"): "drift loop: condition-balanced sampling",
    ("model_evaluation", "drift_queue"): "drift loop: the gate's per-condition slices",
    # a warm start (training.incremental) begins from the champion model_evaluation promoted
    # and asks whether the last warm-started model lost the gate; declaring it is a cycle
    ("trained_model", "models"): "warm start: the champion and the last gate decision",
}


def _project_callable(obj) -> bool:
    """A project function or class to walk into; resources (``LensStorage``: generic I/O on any
    table) are not walked, their calls are read where they are made."""
    module = getattr(obj, "__module__", "") or ""
    if inspect.isclass(obj) and issubclass(obj, dg.ConfigurableResource):
        return False
    return module.split(".")[0] in PROJECT and (inspect.isfunction(obj) or inspect.isclass(obj))


def _tables(fn, seen: set) -> tuple[set[str], set[str]]:
    """Tables read and written by ``fn`` and the project functions/classes it names."""
    if fn in seen:
        return set(), set()
    seen.add(fn)
    if inspect.isclass(fn):
        reads, writes = set(), set()
        for member in vars(fn).values():
            if inspect.isfunction(member):
                r, w = _tables(member, seen)
                reads |= r
                writes |= w
        return reads, writes
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return set(), set()
    reads, writes = set(), set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            literals = [a.value for a in node.args if isinstance(a, ast.Constant)]
            literals = [v for v in literals if isinstance(v, str)]
            if node.func.attr in READS and literals:
                reads.add(literals[0])
            if node.func.attr in WRITES and literals:
                writes.add(literals[0])
            if node.func.attr in REGISTRY_WRITES:
                writes.add("models")
            if node.func.attr == "registry":  # LensStorage.registry(): the models table
                reads.add("models")
        if isinstance(node, ast.Name):
            names.add(node.id)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PROJECT:
            module = __import__(node.module, fromlist=["_"])
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if obj is not None and _project_callable(obj):
                    r, w = _tables(obj, seen)
                    reads |= r
                    writes |= w
    scope = getattr(fn, "__globals__", {})
    for name in names:
        obj = scope.get(name)
        if obj is not None and _project_callable(obj):
            r, w = _tables(obj, seen)
            reads |= r
            writes |= w
    return reads, writes


def _asset_tables() -> dict[str, tuple[set[str], set[str]]]:
    out = {}
    for assets_def in defs.assets or []:
        if not isinstance(assets_def, dg.AssetsDefinition):
            continue
        fn = assets_def.op.compute_fn
        fn = getattr(fn, "decorated_fn", fn)
        assert isinstance(fn, types.FunctionType), assets_def.keys
        tables = _tables(fn, set())
        for key in assets_def.keys:
            out[key.to_user_string()] = tables
    return out


def test_every_table_an_asset_reads_is_written_upstream():
    graph = defs.resolve_asset_graph()
    tables = _asset_tables()
    writers: dict[str, set[str]] = {}
    for asset, (_, writes) in tables.items():
        for t in writes:
            writers.setdefault(t, set()).add(asset)
    assert {"videos", "frames", "labels", "dataset", "models", "edge_bundles"} <= set(writers)
    problems = []
    for asset, (reads, _) in sorted(tables.items()):
        upstream = {k.to_user_string() for k in graph.get_ancestor_asset_keys(dg.AssetKey(asset))}
        for table in sorted(reads):
            written_by = writers.get(table, set())
            if not written_by or written_by & (upstream | {asset}):
                continue
            if (asset, table) in READ_ACROSS:
                continue
            problems.append(
                f"{asset} reads {table!r}, written by {sorted(written_by)}: not upstream"
            )
    assert not problems, "\n".join(problems)


def test_the_walk_finds_reads_through_helpers():
    """The walk is not vacuous: reads made inside lake helpers are attributed to the asset."""
    tables = _asset_tables()
    reads, _ = tables["frame_embeddings"]
    assert {"labels", "frames", "videos"} <= reads  # videos and frames via lake.frames.ok_frames
    reads, _ = tables["onnx_model"]
    assert {"models", "dataset"} <= reads  # the registry and the split via load_champion
    assert set(READ_ACROSS) <= {(a, t) for a, (r, _) in tables.items() for t in r}
