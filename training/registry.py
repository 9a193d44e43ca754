"""The model registry: a ``models`` Delta table plus an append-only ``model_events`` Delta table.

``models`` (one row per model version; rows are never deleted):
    model_version, dataset_version, label_version, code_version, created_at, metrics (JSON),
    config (JSON), checkpoint_uri, checkpoint_sha256, alias (champion | challenger | archived),
    parent_version, notes

``model_events`` (one row per alias change; append-only, the source of truth for aliases):
    seq, change_id, at, model_version, event (register | promote | archive | rollback),
    alias_before, alias_after, reason

Every alias change first appends its event rows (one commit), then re-projects ``models.alias``
from the events (one MERGE commit, only where it differs). A crash between the two leaves
``models.alias`` stale, never the registry's answers: reads overlay the event-derived aliases,
and the next write (or :meth:`ModelRegistry.repair`) fixes the table. Delta keeps every
earlier version of both tables (time travel); nothing here vacuums or deletes.

The promotion *policy* (:func:`decide_promotion`, :class:`PromotionDecision`) lives in
:mod:`training.promotion`; it is re-exported here, where callers look for it.

Promotion history is a stack: ``promote`` pushes, ``rollback`` pops, so successive rollbacks
walk back through earlier champions. Safe for one writer at a time (Delta's optimistic
commits reject a conflicting alias MERGE; two concurrent appends could reuse a ``seq``).
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from training.promotion import LOWER_IS_BETTER, PromotionDecision, decide_promotion

__all__ = [
    "MODEL_SCHEMA",
    "EVENT_SCHEMA",
    "ModelRecord",
    "ModelRegistry",
    "PromotionDecision",
    "RegistryError",
    "decide_promotion",
    "LOWER_IS_BETTER",
]

MODEL_SCHEMA = pl.Schema({
    "model_version": pl.String(),
    "dataset_version": pl.Int64(),
    "label_version": pl.Int64(),
    "code_version": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "metrics": pl.String(),
    "config": pl.String(),
    "checkpoint_uri": pl.String(),
    "checkpoint_sha256": pl.String(),
    "alias": pl.String(),
    "parent_version": pl.String(),
    "notes": pl.String(),
})  # fmt: skip
EVENT_SCHEMA = pl.Schema({
    "seq": pl.Int64(),
    "change_id": pl.Int64(),
    "at": pl.Datetime("us", "UTC"),
    "model_version": pl.String(),
    "event": pl.String(),
    "alias_before": pl.String(),
    "alias_after": pl.String(),
    "reason": pl.String(),
})  # fmt: skip
ALIASES = ("champion", "challenger", "archived")


class RegistryError(RuntimeError):
    """An operation the registry refuses (unknown version, nothing to roll back to, conflict)."""


@dataclass(frozen=True)
class ModelRecord:
    """One ``models`` row with ``metrics`` and ``config`` parsed from JSON."""

    model_version: str
    dataset_version: int | None
    label_version: int | None
    code_version: str | None
    created_at: datetime
    metrics: dict
    config: dict
    checkpoint_uri: str
    checkpoint_sha256: str
    alias: str
    parent_version: str | None
    notes: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelRecord:
        values = dict(row)
        values["metrics"] = json.loads(values["metrics"] or "{}")
        values["config"] = json.loads(values["config"] or "{}")
        return cls(**{k: values[k] for k in MODEL_SCHEMA.names()})


class ModelRegistry:
    """Champion/challenger bookkeeping on Delta tables (local path or ``s3://`` URI).

    Parameters
    ----------
    table_uri
        The ``models`` table, e.g. ``.lensline/lake/models`` or ``s3://bucket/lake/models``.
    storage_options
        Passed to deltalake (credentials, endpoint, ``AWS_S3_ALLOW_UNSAFE_RENAME`` ...).
    events_uri
        The events table; default: the sibling ``model_events`` (or ``<table_uri>_events``
        when the table is not named ``models``).
    """

    decide_promotion = staticmethod(decide_promotion)

    def __init__(
        self,
        table_uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        events_uri: str | None = None,
    ):
        self.table_uri = str(table_uri).rstrip("/")
        self.storage_options = storage_options
        if events_uri is None:
            head, _, name = self.table_uri.rpartition("/")
            events_uri = f"{head}/model_events" if name == "models" else f"{self.table_uri}_events"
        self.events_uri = str(events_uri).rstrip("/")

    # ------------------------------------------------------------------ reads

    def list(self) -> pl.DataFrame:
        """All model versions, oldest first, with the current (event-derived) alias."""
        models, aliases, _ = self._state()
        return self._overlay(models, aliases).sort("created_at", "model_version")

    def events(self) -> pl.DataFrame:
        """The alias-change history, in order."""
        return self._read(self.events_uri, EVENT_SCHEMA).sort("seq")

    def get(self, version: str) -> ModelRecord:
        """One model version; :class:`RegistryError` if unknown."""
        models, aliases, _ = self._state()
        rows = self._overlay(models, aliases).filter(pl.col("model_version") == version)
        if rows.is_empty():
            raise RegistryError(f"unknown model version {version!r} in {self.table_uri}")
        return ModelRecord.from_row(rows.row(0, named=True))

    def champion(self) -> ModelRecord | None:
        """The current champion, or None before the first promotion."""
        _, _, stack = self._state()
        return self.get(stack[-1]) if stack else None

    # ------------------------------------------------------------------ writes

    def register_challenger(
        self,
        *,
        checkpoint_uri: str,
        checkpoint_sha256: str,
        metrics: Mapping[str, Any] | str,
        config: Mapping[str, Any] | str,
        dataset_version: int | None = None,
        label_version: int | None = None,
        code_version: str | None = None,
        parent_version: str | None = None,
        model_version: str | None = None,
        notes: str | None = None,
    ) -> str:
        """Add a model as ``challenger``; returns its version.

        The version defaults to ``m-<first 12 hex of the checkpoint sha256>``. Registering the
        same version with the same checkpoint again is a no-op; with a different checkpoint
        it raises :class:`RegistryError`.
        """
        version = model_version or f"m-{checkpoint_sha256[:12]}"
        models, _, _ = self._state()
        existing = models.filter(pl.col("model_version") == version)
        if not existing.is_empty():
            if existing["checkpoint_sha256"][0] == checkpoint_sha256:
                return version
            raise RegistryError(
                f"model version {version!r} already registered with checkpoint "
                f"{existing['checkpoint_sha256'][0]}, not {checkpoint_sha256}"
            )
        row = {
            "model_version": version,
            "dataset_version": None if dataset_version is None else int(dataset_version),
            "label_version": None if label_version is None else int(label_version),
            "code_version": code_version,
            "created_at": _now(),
            "metrics": _json(metrics),
            "config": _json(config),
            "checkpoint_uri": str(checkpoint_uri),
            "checkpoint_sha256": checkpoint_sha256,
            "alias": "challenger",
            "parent_version": parent_version,
            "notes": notes,
        }
        self._append(self.table_uri, pl.DataFrame([row], schema=MODEL_SCHEMA), "register", version)
        self._append_events([(version, "register", None, "challenger", notes or "registered")])
        return version

    def promote(self, version: str, *, reason: str) -> None:
        """Make ``version`` the champion; the current champion becomes archived. Idempotent."""
        models, aliases, stack = self._state()
        self._require(models, version)
        if stack and stack[-1] == version:
            self.repair()  # a crash after the events, before the alias MERGE: finish it
            return
        changes = []
        if stack:
            changes.append(
                (stack[-1], "promote", "champion", "archived", f"replaced by {version}: {reason}")
            )
        changes.append(
            (version, "promote", self._alias(models, aliases, version), "champion", reason)
        )
        self._append_events(changes)
        self.repair()

    def archive(self, version: str, *, reason: str) -> None:
        """Retire a challenger (e.g. one the promotion gate rejected). Idempotent."""
        models, aliases, stack = self._state()
        self._require(models, version)
        if stack and stack[-1] == version:
            raise RegistryError(
                f"{version} is the champion; promote another model or roll back first"
            )
        before = self._alias(models, aliases, version)
        if before == "archived":
            self.repair()  # a crash after the events, before the alias MERGE: finish it
            return
        self._append_events([(version, "archive", before, "archived", reason)])
        self.repair()

    def rollback(self, *, reason: str) -> str:
        """Reinstate the previous champion, archive the current one; returns the restored version."""
        models, aliases, stack = self._state()
        if len(stack) < 2:
            raise RegistryError(f"no previous champion to roll back to in {self.table_uri}")
        current, previous = stack[-1], stack[-2]
        self._append_events([
            (current, "rollback", "champion", "archived", reason),
            (previous, "rollback", self._alias(models, aliases, previous), "champion", reason),
        ])  # fmt: skip
        self.repair()
        return previous

    def repair(self) -> bool:
        """Re-project ``models.alias`` from the events (one MERGE commit); True if it changed."""
        from deltalake import CommitProperties, DeltaTable

        models, aliases, _ = self._state()
        stale = [
            (v, aliases[v]) for v, a in zip(models["model_version"], models["alias"], strict=True)
            if v in aliases and aliases[v] != a
        ]  # fmt: skip
        if not stale:
            return False
        source = pl.DataFrame(
            stale, schema={"model_version": pl.String, "alias": pl.String}, orient="row"
        )
        (
            DeltaTable(self.table_uri, storage_options=self.storage_options)
            .merge(
                source.to_arrow(),
                predicate="t.model_version = s.model_version",
                source_alias="s",
                target_alias="t",
                commit_properties=CommitProperties(custom_metadata={"lensline.operation": "alias"}),
            )
            .when_matched_update({"alias": "s.alias"})
            .execute()
        )
        return True

    # ------------------------------------------------------------------ internals

    def _state(self) -> tuple[pl.DataFrame, dict[str, str], builtins.list[str]]:
        """(models as stored, alias per version from the events, champion stack)."""
        models = self._read(self.table_uri, MODEL_SCHEMA)
        aliases: dict[str, str] = {}
        stack: builtins.list[str] = []
        for ev in self.events().iter_rows(named=True):
            aliases[ev["model_version"]] = ev["alias_after"]
            if ev["event"] == "promote" and ev["alias_after"] == "champion":
                stack.append(ev["model_version"])
            elif ev["event"] == "rollback" and ev["alias_before"] == "champion" and stack:
                stack.pop()
        return models, aliases, stack

    @staticmethod
    def _overlay(models: pl.DataFrame, aliases: dict[str, str]) -> pl.DataFrame:
        return models.with_columns(
            pl.col("model_version").replace_strict(aliases, default=pl.col("alias"), return_dtype=pl.String)
            .alias("alias")
        )  # fmt: skip

    @staticmethod
    def _alias(models: pl.DataFrame, aliases: dict[str, str], version: str) -> str:
        if version in aliases:
            return aliases[version]
        return models.filter(pl.col("model_version") == version)["alias"][0]

    def _require(self, models: pl.DataFrame, version: str) -> None:
        if models.filter(pl.col("model_version") == version).is_empty():
            raise RegistryError(f"unknown model version {version!r} in {self.table_uri}")

    def _append_events(self, changes: builtins.list[tuple]) -> None:
        """Append alias changes ``(version, event, before, after, reason)`` in one commit."""
        events = self.events()
        last = events.select(pl.col("seq").max(), pl.col("change_id").max()).row(0)
        seq, change_id = (0, 0) if events.is_empty() else (int(last[0]) + 1, int(last[1]) + 1)
        now = _now()
        rows = [
            {"seq": seq + i, "change_id": change_id, "at": now, "model_version": v, "event": ev,
             "alias_before": before, "alias_after": after, "reason": reason}
            for i, (v, ev, before, after, reason) in enumerate(changes)
        ]  # fmt: skip
        for r in rows:
            if r["alias_after"] not in ALIASES:
                raise ValueError(f"bad alias {r['alias_after']!r}")
        self._append(
            self.events_uri, pl.DataFrame(rows, schema=EVENT_SCHEMA), changes[-1][1], changes[-1][0]
        )

    def _append(self, uri: str, frame: pl.DataFrame, operation: str, version: str) -> None:
        from deltalake import CommitProperties, write_deltalake

        write_deltalake(
            uri,
            frame.to_arrow(),
            mode="append",
            storage_options=self.storage_options,
            commit_properties=CommitProperties(
                custom_metadata={"lensline.operation": operation, "lensline.model_version": version}
            ),
        )

    def _read(self, uri: str, schema: pl.Schema) -> pl.DataFrame:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
            return pl.DataFrame(schema=schema)
        table = DeltaTable(uri, storage_options=self.storage_options).to_pyarrow_table()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.select([pl.col(n).cast(t) for n, t in schema.items()])


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Mapping[str, Any] | str) -> str:
    """Strict JSON text (NaN/inf become null) for the ``metrics`` / ``config`` columns."""
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(_finite(value), sort_keys=True, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
