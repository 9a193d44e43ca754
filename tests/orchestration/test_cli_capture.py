"""``lensline capture``: exit codes and messages (README "Command line"), on a temp home."""

from __future__ import annotations

import json

import pytest

from orchestration.cli import main as lensline

OK = ["capture", "request", "--camera", "cam1", "--policy", "uncertain", "--margin", "0.2"]


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--margin", "0"], "--margin"), (["--policy", "all"], "--policy"),
     (["--camera", "cam/1"], "--camera"), (["--per-hour", "0"], "--per-hour"),
     (["--max-mb", "0"], "--max-mb"), (["--expires", "soon"], "--expires"),
     (["--policy", "random"], "--every-n"), (["--policy", "alarm_clip", "--before", "1"], "--after")],
)  # fmt: skip
def test_a_bad_request_exits_3_naming_the_option_and_writes_nothing(
    home, capsys, monkeypatch, args, option
):
    monkeypatch.setenv("COLUMNS", "200")
    assert lensline(OK + args) == 3
    out = capsys.readouterr().out
    assert f"rejected: {option}:" in out, out
    assert not (home / "capture_requests.json").exists()
    assert not (home / "lake" / "capture_requests").exists()


def test_request_list_cancel(home, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert lensline(OK + ["--reason", "why"]) == 0
    assert "requested cr-00001" in capsys.readouterr().out
    assert lensline(OK + ["--reason", "why"]) == 0
    assert "already active: cr-00001" in capsys.readouterr().out
    doc = json.loads((home / "capture_requests.json").read_text())
    assert doc["signature"]["algorithm"] == "none"  # no LENSLINE_SIGNING_KEY: marked unsigned
    assert [r["request_id"] for r in doc["payload"]["requests"]] == ["cr-00001"]
    assert lensline(["capture", "list"]) == 0
    assert "cr-00001" in capsys.readouterr().out
    assert lensline(["capture", "cancel", "cr-00002"]) == 3
    assert "rejected: ID: no capture request 'cr-00002'" in capsys.readouterr().out
    assert lensline(["capture", "cancel", "cr-00001"]) == 0
    assert lensline(["capture", "list"]) == 0
    assert "no capture requests active" in capsys.readouterr().out
    doc = json.loads((home / "capture_requests.json").read_text())
    assert doc["payload"]["requests"] == [] and doc["payload"]["seq"] == 2


def test_an_unreadable_signing_key_exits_3_before_anything_is_written(home, capsys, monkeypatch):
    monkeypatch.setenv("LENSLINE_SIGNING_KEY", "not a key")
    assert lensline(OK) == 3
    assert "rejected:" in capsys.readouterr().out
    assert not (home / "lake" / "capture_requests").exists()
