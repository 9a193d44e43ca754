"""compare_shadow and read_jsonl on crafted runner rows."""

from __future__ import annotations

import json

import pytest

from edge_export.shadow import ShadowError, compare_shadow, format_summary, read_jsonl


def row(i, label, shadow, *, video="cam1__a", mv="m1", sv="m2"):
    return {
        "video": video,
        "frame_index": i,
        "timestamp_s": i / 10,
        "label": label,
        "confidence": 0.9,
        "alarm": False,
        "model_version": mv,
        "shadow_label": shadow,
        "shadow_confidence": 0.8,
        "shadow_model_version": sv,
    }


def test_agreement_matrix_and_disagreement_frames():
    rows = [
        row(0, "good", "good"),
        row(1, "good", "scratch"),
        row(2, "scratch", "scratch"),
        row(3, "scratch", "dent"),
        row(4, "good", "good"),
        {"video": "x", "frame_index": 0, "label": "good", "confidence": 1.0, "model_version": "m1"},
    ]
    r = compare_shadow(rows)
    assert r["frames"] == 5 and r["agreements"] == 3
    assert r["agreement_rate"] == pytest.approx(0.6)
    assert r["classes"] == ["dent", "good", "scratch"]
    assert r["matrix"] == [
        [0, 0, 0],
        [0, 2, 1],
        [1, 0, 1],
    ]
    assert r["per_class"]["good"] == {"frames": 3, "disagreements": 1, "disagreement_rate": 1 / 3}
    assert [d["frame_index"] for d in r["disagreements"]] == [1, 3]
    assert r["disagreements"][0]["shadow_label"] == "scratch"
    assert r["rows_without_shadow"] == 1
    assert r["pairs"] == [
        {
            "model_version": "m1",
            "shadow_model_version": "m2",
            "frames": 5,
            "agreements": 3,
            "agreement_rate": 0.6,
        }
    ]
    text = format_summary(r)
    assert "60.00% (3/5 frames)" in text and "cam1__a 3: scratch (0.90) -> dent (0.80)" in text


def test_per_model_pair_and_capped_frames():
    rows = [row(i, "good", "good", sv="m2") for i in range(4)]
    rows += [row(i, "good", "dent", sv="m3") for i in range(3)]
    r = compare_shadow(rows, max_frames=2)
    assert [(p["shadow_model_version"], p["agreement_rate"]) for p in r["pairs"]] == [
        ("m2", 1.0),
        ("m3", 0.0),
    ]
    assert r["disagreement_count"] == 3 and len(r["disagreements"]) == 2
    assert "... and 1 more" in format_summary(r, show=2)


def test_no_shadow_rows():
    r = compare_shadow([{"label": "good"}])
    assert r["frames"] == 0 and r["agreement_rate"] is None and r["matrix"] == []
    assert format_summary(r) == "shadow: no frames compared"


def test_read_jsonl_round_trip_and_clear_errors(tmp_path):
    p = tmp_path / "run.jsonl"
    rows = [row(0, "good", "good"), row(1, "good", "dent")]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_jsonl(p) == rows
    assert compare_shadow(read_jsonl(p))["agreements"] == 1

    p.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(ShadowError, match=r"run.jsonl:2: not JSON"):
        read_jsonl(p)
    p.write_text("[1, 2]\n")
    with pytest.raises(ShadowError, match=r":1: expected a JSON object, got list"):
        read_jsonl(p)
    p.write_text(json.dumps({"video": "a", "frame_index": 1}) + "\n")
    with pytest.raises(ShadowError, match=r":1: missing field\(s\) label, confidence"):
        read_jsonl(p)
    p.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ShadowError, match="not UTF-8"):
        read_jsonl(p)
    with pytest.raises(ShadowError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")
