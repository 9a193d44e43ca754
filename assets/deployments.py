"""deployments: every box's desired state republished from the lake when a bundle or the
registry changes (``deployments/<box>.json``, signed like the bundles; issue 17).

``lensline deploy`` owns the ``deployments`` table (:mod:`lake.deployments` states its rows and
crash behaviour); this asset only appends to it in two cases, one commit each, before it
publishes: a bundle rebuilt for a version in force (same version, new sha256: the boxes fetch the
new bytes) and, behind ``auto_deploy_champion`` (off: plants decide when the line changes), a
newly promoted champion on ``auto_deploy_boxes``. A crash between those commits and the publish
leaves the table ahead of the files, which the next run (or any ``lensline deploy``) publishes.
"""

import hashlib

import dagster as dg
import polars as pl
from pydantic import Field

from assets.provenance import code_version
from assets.tables import md_table
from lake import pools
from lake.storage import LensStorage

AUTOMATION = "lensline automation"


class DeploymentsConfig(dg.Config):
    """Whether a promotion reaches the line by itself (off by default)."""

    auto_deploy_champion: bool = Field(
        default=False,
        description="Deploy a newly promoted champion as box-wide champion on auto_deploy_boxes "
        "(a version that already ran there as champion, e.g. one a plant rolled back, is not "
        "redeployed).",
    )
    auto_deploy_boxes: list[str] = Field(
        default=[], description="The boxes that follow the registry's champion."
    )


@dg.asset(
    pool=pools.GRAPH,
    deps=["edge_bundle"],
    group_name="edge",
    kinds={"delta", "json"},
    code_version=code_version("deployments", 1, DeploymentsConfig().model_dump()),
)
def deployments(config: DeploymentsConfig, storage: LensStorage):
    """Every box's desired state (deployments/<box>.json), signed, republished from the lake."""
    from edge_export.bundle import load_signing_key
    from lake.deployments import history, publish

    key = load_signing_key()  # LENSLINE_SIGNING_KEY(_FILE), read at run time, never shown
    notes = _auto_deploy(storage, config) if config.auto_deploy_champion else []
    notes += _refresh_rebuilt(storage)
    boxes = sorted({d.box for d, _ in history(storage)})
    rows, digest = [], hashlib.sha256()
    for box in boxes:
        done = publish(storage, box, signing_key=key)
        digest.update(box.encode() + b"\0" + storage.read_bytes(done.uri) + b"\0")
        rows.append({"box": box, **_roles(storage, box), "uri": done.uri,
                     "signed": done.signed, "changed": done.changed})  # fmt: skip
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest.hexdigest()),
        metadata={
            "boxes": len(boxes),
            "changed": sum(r["changed"] for r in rows),
            "desired_state": dg.MetadataValue.md(
                md_table(pl.DataFrame(rows))
                if rows
                else "no deployments yet: `lensline deploy MODEL_VERSION --box BOX`"
            ),
            "changes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
        },
    )


def _auto_deploy(storage: LensStorage, config: DeploymentsConfig) -> list[str]:
    """Deploy the registry's champion on each of ``auto_deploy_boxes`` where it is new."""
    from lake.deployments import deploy, desired_state, history

    registry = storage.registry()
    champion = registry.champion()
    if champion is None:
        return ["auto-deploy: no champion in the registry yet"]
    version = champion.model_version
    events = registry.events().filter(
        (pl.col("model_version") == version) & (pl.col("alias_after") == "champion")
    )
    why = events["reason"][-1] if events.height else ""
    notes = []
    for box in config.auto_deploy_boxes:
        now = desired_state(storage, box)["cameras"].get("*", {}).get("champion") or {}
        if now.get("model_version") == version:
            continue
        ran = [d.seq for d, _ in history(storage, box)
               if (d.camera, d.role, d.model_version) == (None, "champion", version)]  # fmt: skip
        if ran:  # a plant's rollback of the box is not undone by the next run
            notes.append(f"{box}: {version} not redeployed (it ran there before, change "
                         f"{ran[0]}; `lensline deploy {version} --box {box}` runs it)")  # fmt: skip
            continue
        row = deploy(storage, version, box=box, by=AUTOMATION, reason=f"promoted: {why}")
        notes.append(f"{box}: {version} deployed as champion (change {row.seq})")
    return notes


def _refresh_rebuilt(storage: LensStorage) -> list[str]:
    """Redeploy each version in force whose bundle was rebuilt since (a new sha256)."""
    from lake.deployments import DeploymentError, deploy, desired_state, history

    bundles = storage.read_table("edge_bundles")
    if bundles is None:
        return []
    latest = dict(bundles.sort("created_at").select("model_version", "sha256").iter_rows())
    notes = []
    for box in sorted({d.box for d, _ in history(storage)}):
        for scope, roles in desired_state(storage, box)["cameras"].items():
            for role, entry in roles.items():
                version, sha = entry["model_version"], latest.get(entry["model_version"])
                if sha is None or sha == entry["bundle_sha256"]:
                    continue
                camera = None if scope == "*" else scope
                try:
                    row = deploy(storage, version, box=box, camera=camera, role=role,
                                 by=AUTOMATION, reason=f"bundle rebuilt: {version}")  # fmt: skip
                except DeploymentError as e:
                    notes.append(f"{box}/{scope} {role}: {version} not refreshed ({e})")
                    continue
                notes.append(f"{box}/{scope} {role}: {version} bundle rebuilt (change {row.seq})")
    return notes


def _roles(storage: LensStorage, box: str) -> dict[str, str]:
    """``champion`` and ``shadow`` of ``box`` as text: the box-wide one, then camera overrides."""
    from lake.deployments import desired_state

    cameras = desired_state(storage, box)["cameras"]
    out = {}
    for role in ("champion", "shadow"):
        parts = [("" if scope == "*" else f"{scope}: ") + roles[role]["model_version"]
                 for scope, roles in sorted(cameras.items()) if role in roles]  # fmt: skip
        out[role] = ", ".join(parts) or "-"
    return out
