"""Shared-memory segments: a payload written by one side is read back exactly by the
other; unsafe directories, names and files are refused; a rewrite mid-read is noticed."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from chainrule.rpc import shm


@pytest.fixture
def private_dir(tmp_path: Path) -> str:
    path = tmp_path / "shm"
    path.mkdir(mode=0o700)
    return str(path)


def test_a_segment_round_trips_and_is_rewritten_in_place(private_dir: str) -> None:
    segment = shm.Segment(private_dir, "grad")
    reader = shm.SegmentReader(private_dir)
    first = np.arange(10, dtype=np.float32)
    name = segment.write([first.view(np.uint8), b"\0" * 8])
    assert bytes(reader.read(name)) == first.tobytes() + b"\0" * 8
    bigger = np.arange(100_000, dtype=np.float32)  # grows the file: the reader remaps
    assert segment.write([bigger.view(np.uint8)]) == name
    assert bytes(reader.read(name)) == bigger.tobytes()
    mode = os.stat(os.path.join(private_dir, name)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    segment.close()
    assert not os.path.exists(os.path.join(private_dir, name))


def test_a_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    with pytest.raises(shm.ShmError, match=r"must belong to uid .* with mode 0700"):
        shm.check_dir(str(open_dir))
    with pytest.raises(shm.ShmError, match="is not usable"):
        shm.check_dir(str(tmp_path / "missing"))


@pytest.mark.parametrize("name", ["../etc/passwd", "grad-xyz", "theta-" + "0" * 31, "other"])
def test_names_this_module_does_not_make_are_refused(private_dir: str, name: str) -> None:
    with pytest.raises(shm.ShmError, match="not a shared-memory segment name"):
        shm.SegmentReader(private_dir).read(name)


def test_a_file_others_can_read_or_a_symlink_is_refused(private_dir: str) -> None:
    loose = os.path.join(private_dir, "grad-" + "a" * 32)
    with open(loose, "wb") as f:
        f.write(b"\0" * 128)
    os.chmod(loose, 0o644)
    with pytest.raises(shm.ShmError, match="not a private file"):
        shm.SegmentReader(private_dir).read("grad-" + "a" * 32)
    os.symlink(loose, os.path.join(private_dir, "grad-" + "b" * 32))
    with pytest.raises(shm.ShmError, match="cannot be opened"):
        shm.SegmentReader(private_dir).read("grad-" + "b" * 32)


def test_a_segment_caught_mid_write_is_not_read(private_dir: str) -> None:
    segment = shm.Segment(private_dir, "theta")
    name = segment.write([b"x" * 64])
    assert segment._map is not None
    segment._map[0:8] = (3).to_bytes(8, "little")  # odd: as if a write never finished
    with pytest.raises(shm.ShmError, match="rewritten while it was read"):
        shm.SegmentReader(private_dir).read(name)
    segment.close()
