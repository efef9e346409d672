"""A full disk while saving (a real ENOSPC from /dev/full, tests/faults.py): the previous checkpoint stays whole
and loadable, the temporary file is removed, the error is one line naming the file, and the run resumes from the
previous checkpoint once there is space."""

from __future__ import annotations

import pytest
import torch
from faults import disk_full_on_write
from test_loop import Run
from tiny import tiny_params, write_params

from alap import io
from alap.cli import main


def test_a_full_disk_keeps_the_previous_file_and_removes_the_temporary(tmp_path) -> None:
    path = tmp_path / "model.pt"
    io.torch_save({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    with disk_full_on_write("model.pt") as full:
        try:
            io.torch_save({"w": torch.zeros(1000)}, path)
        except io.DiskFull as exc:
            assert str(exc) == f"no space left on device writing {path}"
        else:
            raise AssertionError("a write to a full disk succeeded")
    assert path.read_bytes() == before and torch.equal(io.load_weights(path, "t")["w"], torch.ones(3))
    assert not full[0].exists() and not full[0].is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_resume_checkpoint_that_hits_a_full_disk_leaves_the_last_one_to_resume_from(tmp_path) -> None:
    expected = Run(tmp_path / "a.pt").fit()
    path = tmp_path / "b.pt"
    with disk_full_on_write("b.pt", nth=2), pytest.raises(io.DiskFull, match="b.pt"):
        Run(path).fit()  # saves at steps 2, 4, ...: the save of step 4 finds the disk full
    assert torch.load(path, weights_only=True)["step"] == 2
    resumed = Run(path)
    assert resumed.fit().history == expected.history


def test_the_cli_says_disk_full_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params(tmp_path, ["seg2face"]))
    assert main(["data", "--task", "seg2face"]) == 0
    with disk_full_on_write("train-*.pt", nth=2):  # tiny train saves its resume state at steps 2, 4 and 6
        assert main(["train", "--task", "seg2face"]) == 2
    (state,) = (tmp_path / ".alap/state/seg2face").glob("train-*.pt")
    err = capsys.readouterr().err
    assert err.endswith(f"alap train: error: no space left on device writing {state.relative_to(tmp_path)}\n")
    assert "Traceback" not in err
    assert torch.load(state, weights_only=True)["step"] == 2  # the checkpoint before the failed save
    assert not (tmp_path / "models/seg2face/teacher.pt").exists()
    assert not list(tmp_path.rglob(".*.tmp"))
    assert main(["train", "--task", "seg2face"]) == 0  # with space again it resumes at step 2
    assert io.load_weights(tmp_path / "models/seg2face/teacher.pt", "the teacher")["meta"]["steps"] == 6
