"""line_config: the lines' configurations in force (``line_configs``, written by ``lensline line
apply``) as observable source assets, one per section the graph reads, whose data version is a
digest of that section over every line (:func:`lake.line_config.section_sha`):

==============================  ========================================  ====================
asset                           carries                                   read by
==============================  ========================================  ====================
``line_config_crop``            each camera's crop policy                 frame_embeddings,
                                                                          trained_model
``line_config_classes``         classes, roles, display names, alarms     edge_bundle
``line_config_drift_policy``    drift severity, label budget              drift_report
``line_config_capture``         the capture policy                        the boxes only
==============================  ========================================  ====================

A changed section changes only its own data version, so the automation (``on_new_data``)
rematerialises exactly the assets below it. With no line applied every section is ``none``
(or never observed) and every reader behaves as without line configurations. The
``line_config_sensor`` reports new observations when ``line_configs`` gets a new version; the
observation's metadata (the active configuration of every line as Markdown tables, its version
and sha256) is what the Dagster UI shows.
"""

import warnings

import dagster as dg

from lake.line_config import SECTIONS, LineConfig, Version, active_all, markdown, section_sha
from lake.storage import LensStorage

GROUP = "line_config"
KEYS = {name: dg.AssetKey(f"{GROUP}_{name}") for name in SECTIONS}
_DESCRIPTIONS = {
    "crop": "Each camera's crop policy, from the lines' configurations in force.",
    "classes": "Classes, their roles and display names, and the alarm rules baked into bundles.",
    "drift_policy": "Drift check severity and label budget per line.",
    "capture": "What boxes may send back when asked (published to them in lines/<box>.json).",
}
#: ``dagster/data_version``: the tag an observation's data version travels in (as provenance.py)
DATA_VERSION_TAG = "dagster/data_version"


def observation(versions: list[Version], name: str) -> tuple[str, dict]:
    """``(data_version, metadata)`` of section ``name`` for the lines in force ``versions``."""
    configs = [v.config for v in versions]
    metadata: dict = {
        "lines": dg.MetadataValue.json(
            {v.line: f"v{v.version} ({v.sha256[:12]}, {v.applied_by})" for v in versions}
        ),
        "configuration": dg.MetadataValue.md(
            "\n\n".join(f"### {v.line} v{v.version}\n\n{markdown(v.config)}" for v in versions)
            or "no line configuration applied (`lensline line apply FILE`)"
        ),
    }
    if name == "capture":
        metadata["capture"] = dg.MetadataValue.json(
            {c.line: c.capture.model_dump() for c in configs}
        )
    return section_sha(configs, name), metadata


def _observer(name: str) -> dg.SourceAsset:
    def observe(storage: LensStorage) -> dg.ObserveResult:
        version, metadata = observation(active_all(storage), name)
        return dg.ObserveResult(data_version=dg.DataVersion(version), metadata=metadata)

    observe.__name__ = KEYS[name].path[-1]
    with warnings.catch_warnings():  # observable_source_asset is "beta" in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.observable_source_asset(
            key=KEYS[name], group_name=GROUP, description=_DESCRIPTIONS[name]
        )(observe)


#: The observable source assets, one per section of :data:`lake.line_config.SECTIONS`.
line_config_assets = [_observer(name) for name in SECTIONS]


@dg.sensor(
    name="line_config_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports the line configurations in force when `lensline line apply` adds a version.",
)
def line_config_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    table_version = storage.table_version("line_configs")
    if table_version is None or str(table_version) == context.cursor:
        return dg.SkipReason("no new line configuration")
    return dg.SensorResult(asset_events=observation_events(storage), cursor=str(table_version))


def observation_events(storage: LensStorage) -> list[dg.AssetObservation]:
    """An observation of every ``line_config_*`` asset for the lines in force now (what the
    sensor reports, and ``lensline line apply`` into the home's instance for ``lensline run``)."""
    versions = active_all(storage)
    events = []
    for name, key in KEYS.items():
        version, metadata = observation(versions, name)
        events.append(
            dg.AssetObservation(asset_key=key, metadata=metadata, tags={DATA_VERSION_TAG: version})
        )
    return events


def for_camera(storage: LensStorage, camera_id: str) -> LineConfig | None:
    """The configuration in force of the line that has ``camera_id`` (None: no line has it)."""
    return next((v.config for v in active_all(storage) if camera_id in v.config.crops()), None)


def crop_overrides(storage: LensStorage) -> dict[str, str]:
    """``camera_id -> crop`` of every camera of the lines in force (empty: none applied)."""
    out: dict[str, str] = {}
    for v in active_all(storage):
        out.update(v.config.crops())
    return out


def bundle_rules(storage: LensStorage) -> tuple[dict, str] | None:
    """The alarm rules of the lines in force as :class:`AlarmRules` keyword arguments, and which
    line version they come from; None when no line is applied. Lines whose classes sections
    differ: the most recently applied wins (the bundle is one model for every line)."""
    versions = sorted(active_all(storage), key=lambda v: v.applied_at)
    if not versions:
        return None
    chosen = versions[-1]
    return chosen.config.alarm_rules_kwargs(), f"{chosen.line}-v{chosen.version}"


def with_line_crops(spec, storage: LensStorage):
    """``spec`` (a :class:`training.preprocess.PreprocessSpec`) with the crops of the cameras of
    the lines in force; ``spec`` itself when no line is applied."""
    from dataclasses import replace

    from edge_export.preprocess import Crop

    crops = crop_overrides(storage)
    if not crops:
        return spec
    return replace(spec, cameras={**spec.cameras, **{c: Crop.parse(t) for c, t in crops.items()}})
