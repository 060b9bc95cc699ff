import json
import os

import pytest

from medguna.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_read_back_and_leave_no_temporary(tmp_path):
    target = tmp_path / "deep" / "study.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    write_text_atomic(target, "second\r\n")
    assert target.read_bytes() == b"second\r\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["study.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "marker.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes_atomic(target, b"new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker.json"]
