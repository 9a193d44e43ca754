"""Edge bundle: round trip, reproducibility, tampering, signatures, unsafe archives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from edge_export.bundle import (
    Bundle,
    BundleError,
    SigningKeyError,
    build_bundle,
    generate_signing_key,
    load_signing_key,
    load_trusted_key,
    open_bundle,
    public_key_fingerprint,
)
from edge_export.fsutil import sha256_file
from edge_export.postprocess import AlarmRules
from training.preprocess import Crop, PreprocessSpec

CLASSES = ["good", "scratch"]
CREATED = "2026-01-02T03:04:05+00:00"


@pytest.fixture(scope="module")
def keys():
    return generate_signing_key(), generate_signing_key()


@pytest.fixture
def make(brightness_onnx, tmp_path):
    """``make(name, key=None, **overrides)`` -> BundleInfo of a small bundle in tmp_path."""

    def _make(name: str = "bundle.tar.gz", key: bytes | None = None, **kw):
        args = dict(
            files={"model.onnx": brightness_onnx.path, "model.int8.onnx": brightness_onnx.path},
            model_version="m-001",
            classes=CLASSES,
            preprocess=PreprocessSpec(
                image_size=32, crop=Crop("full"), cameras={"cam2": Crop("fixed", box=(0, 0, 8, 8))}
            ),
            postprocess=AlarmRules(raise_after=2, clear_after=2),
            model_card={
                "metrics": {"accuracy": 0.97, "macro_f1": 0.95},
                "gates_passed": ["onnx_parity", "int8_accuracy"],
                "known_limits": ["trained on two cameras"],
            },
            lineage={
                "model": "m-001",
                "dataset_version": 4,
                "label_version": 7,
                "code_version": "abc123",
                "videos": {"cam1__a": "0" * 64},
            },
            targets={"onnx": "ok", "int8": "ok", "tensorrt": "skipped: TensorRT not installed"},
            signing_key=key,
            created_at=CREATED,
        )
        args.update(kw)
        return build_bundle(tmp_path / name, **args)

    return _make


def repack(src: Path, dst: Path, edit) -> Path:
    """Rewrite a bundle's members: ``edit(dict name -> bytes)`` mutates the dict in place."""
    with tarfile.open(src, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    edit(members)
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def test_round_trip(make, brightness_onnx, keys):
    (private, public), _ = keys
    info = make(key=private)
    assert info.sha256 == sha256_file(info.path)
    assert info.manifest["format"] == "lensline.bundle/1"
    with open_bundle(info.path, trusted_public_key=public) as b:
        assert isinstance(b, Bundle)
        assert b.model_version == "m-001"
        assert b.classes == CLASSES
        assert b.preprocess.crop_for("cam2").policy == "fixed"
        assert b.postprocess.defect_classes == ("scratch",)
        assert b.postprocess.raise_after == 2
        assert b.model_card["gates_passed"] == ["onnx_parity", "int8_accuracy"]
        assert b.lineage["videos"] == {"cam1__a": "0" * 64}
        assert b.targets["tensorrt"].startswith("skipped: ")
        assert b.signature.kind == "trusted"
        assert sha256_file(b.model_path("int8")) == sha256_file(brightness_onnx.path)
        assert b.sha256 == info.sha256
        card = (b.root / "MODEL_CARD.md").read_text()
        assert "# Model card: m-001" in card and "int8_accuracy" in card and "TensorRT" in card
        root = b.root
        with pytest.raises(BundleError, match="not exported .skipped: TensorRT"):
            b.model_path("tensorrt")
        with pytest.raises(BundleError, match="has no target 'openvino'"):
            b.model_path("openvino")
    assert not root.exists()


def test_same_inputs_same_sha256(make, keys, monkeypatch):
    (private, _), _ = keys
    assert make("a.tar.gz").sha256 == make("b.tar.gz").sha256
    assert make("c.tar.gz", key=private).sha256 == make("d.tar.gz", key=private).sha256
    assert make("e.tar.gz").sha256 != make("f.tar.gz", model_version="m-002").sha256
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767323045")
    assert make("g.tar.gz", created_at=None).sha256 == make("h.tar.gz", created_at=None).sha256
    assert make("g.tar.gz", created_at=None).manifest["created_at"] == CREATED
    assert not list(Path(make("i.tar.gz").path).parent.glob(".*.tmp"))


def test_private_key_never_in_the_bundle(make, keys, tmp_path):
    (private, _), _ = keys
    info = make(key=private)
    body = private.split(b"\n")[1]
    with tarfile.open(info.path, "r:gz") as tar:
        for m in tar:
            assert body not in tar.extractfile(m).read(), m.name


def test_unsigned_bundle_is_reported_and_refused_when_a_key_is_pinned(make, keys):
    (_, public), _ = keys
    info = make()
    with open_bundle(info.path) as b:
        assert b.signature.kind == "unsigned"
        assert "UNSIGNED" in b.signature.message
    with pytest.raises(BundleError, match="unsigned, but a trusted key is configured"):
        open_bundle(info.path, trusted_public_key=public)


def test_self_signed_bundle_is_reported_not_pinned(make, keys):
    (private, public), _ = keys
    with open_bundle(make(key=private).path) as b:
        assert b.signature.kind == "self-signed"
        fp = public_key_fingerprint(_public(public))
        assert b.signature.message == f"signed by {fp}, not pinned"


def _public(pem: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem)


def test_trusted_key_forms(make, keys, tmp_path):
    (private, public), _ = keys
    info = make(key=private)
    pub_file = tmp_path / "signer.pem"
    pub_file.write_bytes(public)
    fp = public_key_fingerprint(_public(public))
    for pin in (public, public.decode(), str(pub_file), pub_file, fp, fp.upper()):
        with open_bundle(info.path, trusted_public_key=pin) as b:
            assert b.signature.kind == "trusted"
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_trusted_key(str(tmp_path / "nope.pem"))
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        load_trusted_key(tmp_path / "junk.pem")


def test_signed_by_another_key_is_refused(make, keys):
    (private, _), (_, other_public) = keys
    with pytest.raises(BundleError, match="not by the trusted key"):
        open_bundle(make(key=private).path, trusted_public_key=other_public)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update({"model.onnx": m["model.onnx"][:-1] + b"\x00"}), "model.onnx: sha256"),
        (lambda m: m.pop("model.int8.onnx"), "missing: model.int8.onnx"),
        (lambda m: m.update({"extra.bin": b"x"}), "not listed in the manifest: extra.bin"),
        (lambda m: m.pop("classes.json"), "missing: classes.json"),
    ],
    ids=["changed-byte", "removed-file", "extra-file", "removed-classes"],
)
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_tampering_detected(make, keys, tmp_path, edit, message, signed):
    (private, _), _ = keys
    info = make(key=private if signed else None)
    bad = repack(info.path, tmp_path / "bad.tar.gz", edit)
    with pytest.raises(BundleError, match=message) as e:
        open_bundle(bad)
    assert str(bad) in str(e.value)


def _edit_manifest(change):
    def edit(m):
        manifest = json.loads(m["manifest.json"])
        change(manifest)
        m["manifest.json"] = json.dumps(manifest).encode()

    return edit


def test_edited_manifest_breaks_the_signature(make, keys, tmp_path):
    (private, _), _ = keys
    info = make(key=private)
    bad = repack(
        info.path,
        tmp_path / "bad.tar.gz",
        _edit_manifest(lambda d: d.update(model_version="m-999")),
    )
    with pytest.raises(BundleError, match="bad signature"):
        open_bundle(bad)


def test_bad_signature_and_swapped_signer(make, keys, tmp_path):
    (private, _), (other_private, other_public) = keys
    info = make(key=private)
    bad = repack(
        info.path, tmp_path / "bad.tar.gz", lambda m: m.update({"manifest.sig": b"\x00" * 64})
    )
    with pytest.raises(BundleError, match="bad signature"):
        open_bundle(bad)
    swapped = repack(
        info.path, tmp_path / "sw.tar.gz", lambda m: m.update({"signer.pub": other_public})
    )
    with pytest.raises(BundleError, match="does not match the key fingerprint"):
        open_bundle(swapped)
    with pytest.raises(BundleError, match="signer.pub is missing"):
        open_bundle(repack(info.path, tmp_path / "ns.tar.gz", lambda m: m.pop("signer.pub")))


def test_unknown_format_and_garbage(make, tmp_path):
    info = make()
    future = repack(
        info.path,
        tmp_path / "v2.tar.gz",
        _edit_manifest(lambda d: d.update(format="lensline.bundle/2")),
    )
    with pytest.raises(BundleError, match="unknown bundle format 'lensline.bundle/2'"):
        open_bundle(future)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(BundleError, match="not a readable bundle.tar.gz"):
        open_bundle(junk)
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "absent.tar.gz")
    nomanifest = repack(info.path, tmp_path / "nm.tar.gz", lambda m: m.pop("manifest.json"))
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(nomanifest)


def test_class_map_inconsistent_with_rules_refused(make, tmp_path):
    import hashlib

    info = make()

    def edit(m):
        m["classes.json"] = json.dumps(["good", "dent"]).encode()
        manifest = json.loads(m["manifest.json"])
        manifest["files"]["classes.json"] = hashlib.sha256(m["classes.json"]).hexdigest()
        m["manifest.json"] = json.dumps(manifest).encode()

    with pytest.raises(BundleError, match=r"postprocess.json does not fit classes.json.*scratch"):
        open_bundle(repack(info.path, tmp_path / "cls.tar.gz", edit))
    with pytest.raises(BundleError, match="do not fit the class map"):
        make("x.tar.gz", postprocess=AlarmRules(defect_classes=["crack"]))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("traversal", "unsafe member path '../evil.txt'"),
        ("absolute", "unsafe member path '/tmp/evil.txt'"),
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
    ],
)
def test_unsafe_archives_refused(tmp_path, kind, message):
    bad = tmp_path / "evil.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        if kind in ("traversal", "absolute"):
            name = "../evil.txt" if kind == "traversal" else "/tmp/evil.txt"
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        else:
            info = tarfile.TarInfo("model.onnx")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    out = tmp_path / "x" / "y"
    with pytest.raises(BundleError, match=message):
        open_bundle(bad, extract_to=out)
    assert not (tmp_path / "x" / "evil.txt").exists()
    assert not list(out.iterdir())


def test_build_refuses_bad_inputs(make, brightness_onnx, tmp_path):
    with pytest.raises(BundleError, match="'manifest.json' is written by build_bundle"):
        make(files={"manifest.json": brightness_onnx.path})
    with pytest.raises(BundleError, match="must be a relative path"):
        make(files={"../model.onnx": brightness_onnx.path})
    with pytest.raises(BundleError, match="does not exist"):
        make(files={"model.onnx": tmp_path / "nope.onnx"})
    with pytest.raises(BundleError, match="target openvino is 'ok' but its model file"):
        make(targets={"onnx": "ok", "openvino": "ok"})
    with pytest.raises(BundleError, match="must be 'ok' or 'skipped: <reason>'"):
        make(targets={"onnx": "ok", "int8": "failed"})


def test_load_signing_key_from_env_only(keys, tmp_path):
    (private, _), _ = keys
    assert load_signing_key({}) is None
    assert load_signing_key({"LENSLINE_SIGNING_KEY": private.decode()}) == private
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(private)
    assert load_signing_key({"LENSLINE_SIGNING_KEY_FILE": str(key_file)}) == private
    with pytest.raises(SigningKeyError, match="only one"):
        load_signing_key(
            {"LENSLINE_SIGNING_KEY": private.decode(), "LENSLINE_SIGNING_KEY_FILE": str(key_file)}
        )
    secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"
    with pytest.raises(SigningKeyError) as e:
        load_signing_key({"LENSLINE_SIGNING_KEY": secret})
    assert "c2VjcmV0" not in str(e.value)
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signing_key({"LENSLINE_SIGNING_KEY_FILE": str(tmp_path / "missing.pem")})
