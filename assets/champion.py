"""The champion as the edge exports see it: its verified checkpoint, its own preprocessing
contract and its curated splits; where export files live (``artifacts/exports/<version>/``)."""

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np

from assets.models import split_images
from lake.storage import LensStorage

EXPORTS = "exports"


@dataclass
class Champion:
    """The registry's champion with its verified checkpoint and preprocessing contract."""

    record: object
    model: object
    classes: list[str]
    spec: object

    @property
    def version(self) -> str:
        return self.record.model_version  # type: ignore[attr-defined]

    def inputs(
        self, storage: LensStorage, split: str, *, max_frames: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, 3, S, S) model inputs and int (N,) labels of one split of the champion's
        own dataset version, made with its own preprocessing contract; an even subsample of
        ``max_frames`` when larger (0: all)."""
        images, labels, _ = split_images(
            storage,
            split,
            self.classes,
            self.spec,
            version=self.record.dataset_version,  # type: ignore[attr-defined]
        )
        if max_frames and len(images) > max_frames:
            keep = np.linspace(0, len(images) - 1, max_frames).round().astype(int)
            images, labels = images[keep], labels[keep]
        return self.spec.normalize(images), labels  # type: ignore[attr-defined]


def load_champion(storage: LensStorage) -> Champion:
    """The registry's champion and its checkpoint (sha256-verified)."""
    registry = storage.registry()
    record = registry.champion()
    if record is None:
        raise dg.Failure(
            "no champion in the model registry yet: materialise model_evaluation first"
        )
    # torch (~1 s to import) only once there is a checkpoint to load: ingestion before the
    # first champion never imports it
    from training.checkpoint import checkpoint_spec, load_checkpoint

    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    return Champion(record, model, json.loads(meta["classes"]), checkpoint_spec(meta))


def export_uri(storage: LensStorage, version: str, name: str) -> str:
    return storage.uri("artifacts", EXPORTS, version, name)


def store_export(storage: LensStorage, version: str, local: Path, name: str) -> tuple[str, str]:
    """Copy one export file into the artifacts store; (uri, sha256)."""
    from edge_export.fsutil import sha256_file

    uri = export_uri(storage, version, name)
    storage.write_bytes(uri, local.read_bytes())
    return uri, sha256_file(local)


def fetch_export(storage: LensStorage, version: str, name: str, into: Path) -> Path:
    """A stored export file copied to ``into`` (a local temp dir)."""
    uri = export_uri(storage, version, name)
    try:
        data = storage.read_bytes(uri)
    except (FileNotFoundError, OSError) as e:
        raise dg.Failure(f"{uri} is missing: materialise the export that writes it first") from e
    local = into / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return local


def latency_md(champion: Champion, x: np.ndarray, iters: int, **exports: Path) -> str:
    """Markdown latency table: torch eager beside each exported file (``target=path``), batch 1
    and batch 32 on the same real test inputs, plus the physical reference."""
    from edge_export.latency import (
        benchmark_predictor,
        latency_table,
        physical_reference,
        torch_benchmark,
    )

    x1, xb = x[:1], x[:32]
    reports = [torch_benchmark(champion.model, x1, xb, warmup=5, iters=iters)]
    reports += [
        benchmark_predictor(
            path,
            "openvino" if name.startswith("openvino") else name,
            x1,
            xb,
            warmup=5,
            iters=iters,
            name=name,
        )
        for name, path in exports.items()
    ]
    ref = physical_reference(champion.model, champion.spec.image_size)  # type: ignore[attr-defined]
    return latency_table(reports, reference=ref)
