"""The one atomic writer: a target is replaced whole or not at all, and a failed write leaves nothing behind."""

from __future__ import annotations

import os

import pytest

from stores.atomic import atomic_path, is_temporary, write_atomically


def test_a_write_replaces_the_target_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "folder" / "model.json"
    write_atomically(target, "first")
    write_atomically(target, b"second", durable=True)
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["model.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)  # shared artifacts, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_content_and_cleans_up(tmp_path):
    target = tmp_path / "pointer.json"
    write_atomically(target, "good")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        assert is_temporary(temporary.name) and not is_temporary(target.name)
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["pointer.json"]
