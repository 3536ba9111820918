"""Which checkpoint a rerun resumes from: only complete ones (marker + readable trainer_state.json)."""
from __future__ import annotations

import json
from pathlib import Path

from backend.checkpoints import discard_incomplete, is_complete, last_complete_checkpoint, write_marker


def checkpoint(folder: Path, step: int, *, marker: bool = True, state: str | None = None) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(state if state is not None else json.dumps({"global_step": step}))
    if marker:
        write_marker(path, step)
    return path


def test_newest_complete_checkpoint_wins_by_step_not_by_name(tmp_path):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "runs").mkdir()
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_half_written_checkpoints_are_ignored_and_discarded(tmp_path):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 4, marker=False)                      # killed before the Trainer finished it
    checkpoint(tmp_path, 6, state='{"global_step": 6, "log_')  # marker but truncated state: not trusted
    assert not is_complete(tmp_path / "checkpoint-4") and not is_complete(tmp_path / "checkpoint-6")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert discard_incomplete(tmp_path) == [tmp_path / "checkpoint-4", tmp_path / "checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


def test_no_folder_or_no_checkpoint_means_start_fresh(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    checkpoint(tmp_path, 3, marker=False)
    assert last_complete_checkpoint(tmp_path) is None
