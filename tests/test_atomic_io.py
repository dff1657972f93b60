"""The one atomic writer: a file or folder appears whole, and a failure half-way leaves the old one and
no temporary behind."""

import json

import numpy as np
import pytest

from blender_addon.core.atomic_io import (
    atomic_folder,
    atomic_write,
    replace_folder,
    temporary_sibling,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_a_file_appears_whole_and_the_temporary_keeps_the_suffix(tmp_path):
    target = tmp_path / "sub" / "motion.npz"
    with atomic_write(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".") and temporary.suffix == ".npz"
        assert not target.exists()
        np.savez(temporary, joints=np.zeros(3))  # np.savez adds .npz to a name without it
    with np.load(target) as data:
        np.testing.assert_array_equal(data["joints"], np.zeros(3))
    assert [p.name for p in target.parent.iterdir()] == ["motion.npz"]


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "table.md", "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target, fsync=True) as temporary:
            temporary.write_text("half of the n")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_conveniences_and_fsync(tmp_path):
    write_bytes_atomic(tmp_path / "a.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "b.json", {"x": 1.5})
    with atomic_write(tmp_path / "c.txt", fsync=True) as temporary:
        temporary.write_text("synced")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.json").read_text() == '{\n "x": 1.5\n}\n' and json.loads((tmp_path / "b.json").read_text())
    assert (tmp_path / "c.txt").read_text() == "synced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.txt"]


def test_temporary_names_are_unique():
    assert temporary_sibling("/x/camera.json") != temporary_sibling("/x/camera.json")


def test_a_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    target = tmp_path / "pipeline"
    with atomic_folder(target) as temporary:
        (temporary / "model_index.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["model_index.json"]
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as temporary:
            (temporary / "half.safetensors").write_bytes(b"..")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["model_index.json"]
    with atomic_folder(target) as temporary:
        (temporary / "new.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["pipeline"]


def test_replace_folder_puts_a_complete_folder_in_place(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"old")
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / "new.png").write_bytes(b"new")
    replace_folder(tmp_path / ".out.partial", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.png"]
