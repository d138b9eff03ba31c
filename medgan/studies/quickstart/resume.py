"""The quickstart's resume demonstration: a finished run's folder, as a crash would have left it."""

from __future__ import annotations

import shutil
from pathlib import Path

from medgan.train.checkpoint import CheckpointIO
from medgan.train.engine import LOG_FILE

__all__ = ["interrupted_copy"]


def interrupted_copy(run_dir: str | Path, job_dir: str | Path) -> int:
    """Copy ``run_dir`` into ``job_dir`` with only its newest checkpoint before the end: the folder a
    process killed at that step would have left (later log lines included; resuming drops them).

    Resuming the copy then retrains only the steps after that checkpoint, not the whole run.
    Returns the checkpoint's step. A previous copy in ``job_dir`` is replaced, so re-running the
    demonstration resumes again instead of finding the finished run.
    """
    run_dir = Path(run_dir)
    steps = CheckpointIO(run_dir).steps()
    if len(steps) < 2:
        raise ValueError(f"{run_dir.name}: the run kept no checkpoint before its last ({steps}); lower "
                         f"train.checkpoint_every below train.steps")
    stopped_at = steps[1]
    dest = Path(job_dir) / run_dir.name
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "checkpoints").mkdir(parents=True)
    for name in ("fingerprint.json", LOG_FILE):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    shutil.copy2(CheckpointIO(run_dir).path(stopped_at), CheckpointIO(dest).path(stopped_at))
    return stopped_at
