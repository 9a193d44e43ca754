"""The home's mongod: started once, reused, guarded; a missing binary is a clear error."""

from __future__ import annotations

import pytest

from lake.fiftyone_db import DatabaseStartError, FiftyOneSetupError, configure, find_mongod


def test_missing_mongod_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LENSLINE_MONGOD", str(tmp_path / "no-such-mongod"))
    with pytest.raises(DatabaseStartError, match="LENSLINE_MONGOD"):
        find_mongod()


def test_configure_is_idempotent_and_guards_the_connection(fo_home, tmp_path):
    import fiftyone as fo

    pidfile = fo_home / "fiftyone" / "mongod.pid"
    pid = pidfile.read_text()
    assert configure(fo_home) == configure(fo_home)
    assert pidfile.read_text() == pid  # reused, not restarted
    fo.list_datasets()  # connected now: another home must be refused, not silently mixed in
    with pytest.raises(FiftyOneSetupError, match="already connected"):
        configure(tmp_path / "other_home")
    assert not (tmp_path / "other_home" / "fiftyone" / "db").exists()
