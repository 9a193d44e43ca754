"""The edge bundle: one signed, reproducible ``bundle.tar.gz`` per model version.

Layout (flat archive names; ``openvino/`` is the only folder)::

    manifest.json      {"format": "lensline.bundle/1", model_version, created_at,
                        files: {name: sha256} for every member below except the signature
                        envelope, models: {target: name}, targets: {target: "ok" | "skipped: why"},
                        lineage: {model, dataset, labels, code versions, videos: {id: sha256}},
                        signature: {algorithm: "ed25519" | "none", public_key_sha256, ...}}
    manifest.sig       Ed25519 signature of the exact bytes of manifest.json  (signed only)
    signer.pub         the signer's public key, PEM                           (signed only)
    model.onnx, model.int8.onnx, openvino/model.xml + .bin, ...   the exported models
    classes.json       the class map, index order = model output order
    preprocess.json    :class:`edge_export.preprocess.PreprocessSpec`
    postprocess.json   :class:`edge_export.postprocess.AlarmRules` (defect classes resolved)
    model_card.json    metrics, gates passed, known limits; rendered as MODEL_CARD.md

Writing is atomic and deterministic (:mod:`.build`); the private signing key comes only from
the environment (:mod:`.signing`); readers verify everything before use (:mod:`.verify`).

==============  ===============================================================================
module          what
==============  ===============================================================================
``layout``      format name, member names, the archive-name rule, :class:`BundleError`
``signing``     Ed25519 keys: :func:`generate_signing_key`, :func:`load_signing_key`, pins
``build``       :func:`build_bundle`, the model card
``verify``      :func:`open_bundle` -> :class:`Bundle`: safe extraction, signature, digests
==============  ===============================================================================

Only numpy, OpenCV and ``cryptography`` (no torch, no Dagster): the edge runner imports it.
"""

from edge_export.bundle.build import BundleInfo, build_bundle
from edge_export.bundle.layout import ENV_TRUSTED, FORMAT, TARGET_FILES, BundleError
from edge_export.bundle.signing import (
    SigningKeyError,
    TrustedKey,
    generate_signing_key,
    load_signing_key,
    load_trusted_key,
    public_key_fingerprint,
)
from edge_export.bundle.verify import Bundle, SignatureStatus, open_bundle

__all__ = [
    "ENV_TRUSTED",
    "FORMAT",
    "TARGET_FILES",
    "Bundle",
    "BundleError",
    "BundleInfo",
    "SignatureStatus",
    "SigningKeyError",
    "TrustedKey",
    "build_bundle",
    "generate_signing_key",
    "load_signing_key",
    "load_trusted_key",
    "open_bundle",
    "public_key_fingerprint",
]
