"""gtahuman.atomic: a write that runs out of space names the file and leaves the old one, whether the
writer raised ENOSPC itself or (as torch.save does) a RuntimeError raised while handling it."""
from __future__ import annotations

import errno
import io
import os

import pytest
import torch

from gtahuman.atomic import DiskFullError, atomic_open, atomic_output, ran_out_of_space


class FillsUp(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, inner, room: int):
        self.inner, self.room = inner, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            self.inner.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.inner.write(data)


def test_torch_saves_full_disk_is_named_and_the_previous_file_stays(tmp_path) -> None:
    target = tmp_path / "last.ckpt"
    torch.save({"step": 1}, target)
    before = target.read_bytes()
    with pytest.raises(DiskFullError, match=r"disk full at .*last\.ckpt \(.* MB free there\)") as failure:
        with atomic_open(target, "wb") as handle:
            torch.save({"w": torch.zeros(50_000)}, FillsUp(handle, 4096))
    assert isinstance(failure.value.__cause__, RuntimeError)  # torch's "unexpected pos", ENOSPC in its context
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_path_writer_out_of_space_is_named_and_other_errors_pass_unchanged(tmp_path) -> None:
    target = tmp_path / "column.npy"
    with pytest.raises(DiskFullError, match="column.npy"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"\x93NUMPY")  # a writer that takes a path
            raise OSError(errno.EDQUOT, "quota exceeded")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="not space"):
        with atomic_open(target, "wb"):
            raise ValueError("not space")
    assert not ran_out_of_space(ValueError("x")) and not ran_out_of_space(OSError(errno.EACCES, "denied"))
