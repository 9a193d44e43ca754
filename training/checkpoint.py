"""Model checkpoints as safetensors files (never pickle), verified on load.

A checkpoint is one ``.safetensors`` file: the state dict plus string metadata:

- ``format``: ``"lensline.checkpoint/1"``
- ``architecture``: JSON of :class:`training.model.ModelConfig` (rebuilds the network; with
  ``members`` > 1 a :class:`training.model.LenslineEnsemble`, tensors ``members.<i>.*``)
- ``classes``: JSON list of class names, index order (required from the caller)
- ``preprocess``: JSON of the :class:`training.preprocess.PreprocessSpec` the model was
  trained with: the one preprocessing contract (crop per camera, size, colour order,
  normalisation) that evaluation, export and the edge runner follow
- ``tensors_sha256``: digest of every tensor's name, dtype, shape and bytes, so flipped
  bytes in the data are caught even without the file's sha256
- anything else the caller passes (``config``, ``dataset_version`` ...), as strings.

:func:`save_checkpoint` returns the sha256 of the file, which the registry records and
:func:`load_checkpoint` can demand back.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch

from edge_export.fsutil import atomic_write
from training.model import LenslineEnsemble, LenslineNet, ModelConfig, build_network
from training.preprocess import PreprocessError, PreprocessSpec

__all__ = [
    "CheckpointError",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_spec",
]

FORMAT = "lensline.checkpoint/1"
_RESERVED = ("format", "architecture", "preprocess", "tensors_sha256")


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, tampered with or not a Lensline checkpoint."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"checkpoint {self.path}: {problem}")


def _tensors_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    model: LenslineNet | LenslineEnsemble,
    path: str | os.PathLike,
    *,
    metadata: dict[str, str],
    preprocess: PreprocessSpec,
) -> str:
    """Write ``model`` to ``path`` atomically; return the file's hex sha256.

    Parameters
    ----------
    model
        A :class:`LenslineNet` or :class:`LenslineEnsemble` (its ``config`` becomes the
        ``architecture`` entry).
    path
        Local destination; parent directories are created.
    metadata
        String values only. Must contain ``classes`` (JSON list, one name per output).
    preprocess
        The spec the model's inputs were made with; its ``image_size`` must match the model.
    """
    from safetensors.torch import save

    bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(v, str)}
    if bad:
        raise TypeError(f"checkpoint metadata values must be str; got {bad}")
    if clash := [k for k in _RESERVED if k in metadata]:
        raise ValueError(f"metadata keys {clash} are written by save_checkpoint itself")
    classes = _parse_classes(metadata.get("classes"))
    if classes is None or len(classes) != model.config.num_classes:
        raise ValueError(
            f"metadata['classes'] must be a JSON list of {model.config.num_classes} names, "
            f"got {metadata.get('classes')!r}"
        )
    if preprocess.image_size != model.config.image_size:
        raise ValueError(
            f"preprocess.image_size {preprocess.image_size} != model image_size "
            f"{model.config.image_size}"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        **metadata,
        "format": FORMAT,
        "architecture": json.dumps(model.config.to_dict(), sort_keys=True),
        "preprocess": preprocess.to_json(),
        "tensors_sha256": _tensors_digest(state),
    }
    blob = _canonical(save(state, metadata=meta))
    with atomic_write(path) as f:
        f.write(blob)
    return hashlib.sha256(blob).hexdigest()


def load_checkpoint(
    path: str | os.PathLike, *, expected_sha256: str | None = None
) -> tuple[LenslineNet | LenslineEnsemble, dict[str, str]]:
    """Read, verify and rebuild a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    (model, metadata)
        The network in eval mode and the file's metadata (all strings; ``json.loads`` the
        ``classes``, ``architecture``, ``config`` entries).

    Raises
    ------
    CheckpointError
        Naming the file and the problem: missing, sha256 mismatch, bad header, truncated,
        missing/unexpected tensors, wrong shapes or dtypes, tensor digest mismatch,
        unusable metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(path, f"cannot read file ({e.strerror or e})") from e
    if expected_sha256 is not None:
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected_sha256.lower():
            raise CheckpointError(
                path, f"sha256 mismatch: expected {expected_sha256}, file has {actual}"
            )
    meta = _read_metadata(path, blob)
    try:
        state = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"bad safetensors data ({e})") from e

    if meta.get("format") != FORMAT:
        raise CheckpointError(path, f"not a Lensline checkpoint (format={meta.get('format')!r})")
    try:
        config = ModelConfig(**json.loads(meta["architecture"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(path, f"unusable 'architecture' metadata ({e!r})") from e
    classes = _parse_classes(meta.get("classes"))
    if classes is None or len(classes) != config.num_classes:
        raise CheckpointError(
            path,
            f"'classes' metadata {meta.get('classes')!r} does not list {config.num_classes} names",
        )
    try:
        model = build_network(config)
    except ValueError as e:
        raise CheckpointError(path, f"cannot build model from architecture ({e})") from e

    expected = model.state_dict()
    if missing := sorted(set(expected) - set(state)):
        raise CheckpointError(
            path, f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    if extra := sorted(set(state) - set(expected)):
        raise CheckpointError(
            path, f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}"
        )
    for name, ref in expected.items():
        got = state[name]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise CheckpointError(
                path,
                f"tensor {name!r} is {got.dtype} {tuple(got.shape)}, "
                f"architecture needs {ref.dtype} {tuple(ref.shape)}",
            )
    if meta.get("tensors_sha256") != _tensors_digest(state):
        raise CheckpointError(
            path, "tensor data does not match its recorded digest (corrupted or edited)"
        )
    try:
        spec = PreprocessSpec.from_json(meta.get("preprocess", ""))
    except PreprocessError as e:
        raise CheckpointError(path, f"unusable 'preprocess' metadata ({e})") from e
    if spec.image_size != config.image_size:
        raise CheckpointError(
            path, f"preprocess image_size {spec.image_size} != architecture {config.image_size}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def checkpoint_spec(meta: dict[str, str]) -> PreprocessSpec:
    """The preprocessing contract recorded in a checkpoint's metadata (from :func:`load_checkpoint`)."""
    return PreprocessSpec.from_json(meta["preprocess"])


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes the header from a Rust hash map, in an order that changes from one save
    to the next, so the same weights and metadata gave a different file, sha256 and model
    version every time. Offsets are relative to the data after the header, which is unchanged;
    the header is padded with spaces to 8 bytes, as safetensors pads it.
    """
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n :]


def _read_metadata(path: str | os.PathLike, blob: bytes) -> dict[str, str]:
    """Parse the safetensors header: 8-byte little-endian length, then JSON."""
    if len(blob) < 8:
        raise CheckpointError(path, f"truncated: {len(blob)} bytes, no safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise CheckpointError(
            path, f"truncated: header says {n} bytes, file has {len(blob) - 8} after it"
        )
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(path, f"bad header: not JSON ({e})") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(path, "bad header: no string __metadata__ block")
    return meta


def _parse_classes(raw: str | None) -> list[str] | None:
    try:
        classes = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return None
    return classes
