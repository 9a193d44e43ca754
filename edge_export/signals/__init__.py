"""Plant signals of ``lensline-edge serve``: alarms, results, states and heartbeats to the line.

==================  ================================================================================
module              what
==================  ================================================================================
``base``            :class:`PlantSignals` (the interface), :class:`Fanout` (the one object the
                    service calls), :class:`RecordingSignals` (for tests), payload helpers
``outbox``          :class:`Outbox`: bounded FIFO that drops results before alarms, counted
``mqtt``            ``mqtt``: :class:`MqttSignals` (paho-mqtt), topics ``<prefix>/<camera>/...``
``opcua``           ``opcua``: :class:`OpcUaSignals` (asyncua server, ``Lensline/<camera>`` nodes)
==================  ================================================================================

A new kind is one class with a stable ``kind``, the :class:`PlantSignals` methods and a
``from_config(section, *, box, cameras)`` classmethod, registered once in :data:`REGISTRY`; its
config section is the service config's key of the same name. Nothing heavier than paho-mqtt and
the standard library is imported here; asyncua only when an OPC UA server starts.

Examples
--------
>>> signals = build_signals({"mqtt": {"url": "mqtt://127.0.0.1:1883"}}, box="b1", cameras=["cam1"])  # doctest: +SKIP
>>> signals.alarm("cam1", {"state": "raised", "class": "scratch", "confidence": 0.97})  # doctest: +SKIP
>>> signals.stats()  # doctest: +SKIP
{'mqtt': {'connected': True, 'outages': 0, ...}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge_export.signals.base import (
    ALARM_STATES,
    CAMERA_STATES,
    Fanout,
    PlantSignals,
    RecordingSignals,
    SignalsConfigError,
)
from edge_export.signals.mqtt import MqttConfig, MqttCredentials, MqttSignals
from edge_export.signals.opcua import VARIABLES, OpcUaConfig, OpcUaSignals

__all__ = [
    "ALARM_STATES",
    "CAMERA_STATES",
    "REGISTRY",
    "VARIABLES",
    "Fanout",
    "MqttConfig",
    "MqttCredentials",
    "MqttSignals",
    "OpcUaConfig",
    "OpcUaSignals",
    "PlantSignals",
    "RecordingSignals",
    "SignalsConfigError",
    "build_signals",
]

REGISTRY: dict[str, type[MqttSignals] | type[OpcUaSignals]] = {
    cls.kind: cls for cls in (MqttSignals, OpcUaSignals)
}


def build_signals(config: Mapping[str, Any], *, box: str, cameras: Sequence[str] = ()) -> Fanout:
    """One :class:`Fanout` over every kind of :data:`REGISTRY` whose key is set in ``config``.

    ``config`` is the whole service config (other keys are ignored). Invalid settings raise
    :class:`SignalsConfigError` naming the field, before anything starts; a kind that fails to
    start closes the ones already started.
    """
    present = [kind for kind in REGISTRY if config.get(kind) not in (None, False)]
    for kind in present:  # every section valid before anything starts
        REGISTRY[kind].config_class.from_mapping(config[kind])
    sinks: list[PlantSignals] = []
    try:
        for kind in present:
            sinks.append(REGISTRY[kind].from_config(config[kind], box=box, cameras=cameras))
    except BaseException:
        Fanout(sinks).close()
        raise
    return Fanout(sinks)
