"""Checkpoints: atomic writes, weights-only loads, RNG state, fallback past a corrupt file."""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import atomic

log = logging.getLogger(__name__)

FORMAT = "medgan-checkpoint-v1"
_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that does not match what it is loaded into."""


def capture_rng(noise_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG the training loop draws from, as weights-only-loadable values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if noise_generator is not None:
        state["noise"] = noise_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], noise_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if noise_generator is not None and "noise" in state:
        noise_generator.set_state(state["noise"])


class CheckpointIO:
    """The checkpoints of one run folder: ``<run_dir>/checkpoints/step_XXXXXXXX.pt``.

    Args:
        run_dir: the run folder.
        keep: how many of the newest checkpoints to keep (older ones are deleted after a save).
    """

    def __init__(self, run_dir: str | Path, *, keep: int = 2):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = max(1, keep)

    def path(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}.pt"

    def list(self) -> list[Path]:
        """Checkpoint files, newest first."""
        if not self.dir.is_dir():
            return []
        files = [p for p in self.dir.iterdir() if _NAME.match(p.name)]
        return sorted(files, key=lambda p: int(_NAME.match(p.name).group(1)), reverse=True)

    @property
    def _finals_file(self) -> Path:
        return self.dir / "finished.json"

    def finished_steps(self) -> list[int]:
        """Steps at which a run in this folder finished; their checkpoints are never pruned."""
        try:
            return sorted(int(s) for s in json.loads(self._finals_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return []

    def save(self, state: dict[str, Any], step: int, *, final: bool = False) -> Path:
        """Write ``step``'s checkpoint atomically; ``final`` marks the end of a run (kept for good),
        so asking later for this many steps finds exactly this model."""
        path = atomic.torch_save({"format": FORMAT, "step": step, **state}, self.path(step))
        finals = set(self.finished_steps())
        if final and step not in finals:
            finals.add(step)
            atomic.write_text(self._finals_file, json.dumps(sorted(finals)))
        for old in self.list()[self.keep:]:  # the newest ``keep``, plus every run's final checkpoint
            if int(_NAME.match(old.name).group(1)) not in finals:
                old.unlink(missing_ok=True)
        return path

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, newest first."""
        return [int(_NAME.match(p.name).group(1)) for p in self.list()]

    @staticmethod
    def load(path: str | Path) -> dict[str, Any]:
        """Load one checkpoint; never runs pickled code.

        Raises ``UnsafeFileError`` (code inside), ``CorruptFileError`` (truncated/garbled) or
        ``CheckpointError`` (a torch file that is not a medgan checkpoint).
        """
        state = atomic.torch_load(path)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a medgan checkpoint (field 'format' is missing or not '{FORMAT}')")
        return state

    def load_latest(self, *, max_step: int | None = None) -> dict[str, Any] | None:
        """The newest readable checkpoint (at or before ``max_step``), skipping (and reporting) corrupt
        ones (truncated, empty, garbled); ``None`` if there are none.

        A file that asks to run code on load is never skipped: it may have been tampered with, and so
        may the older files beside it. The search stops there with ``UnsafeFileError`` naming it.
        """
        files = [p for p in self.list() if max_step is None or int(_NAME.match(p.name).group(1)) <= max_step]
        errors = []
        for path in files:
            try:
                state = self.load(path)
            except atomic.UnsafeFileError as exc:
                raise atomic.UnsafeFileError(
                    f"{exc} Resuming stopped here: older checkpoints in {self.dir} were not tried. Inspect "
                    f"the folder; delete {path.name} only if you know how it got there.",
                    path=path, refused=exc.refused) from exc
            except atomic.CorruptFileError as exc:
                log.warning("skipping corrupt checkpoint: %s", exc)
                errors.append(str(exc))
                continue
            if errors:
                log.warning("resuming from %s instead", path.name)
            state["path"] = str(path)
            return state
        if errors:
            raise CheckpointError("no usable checkpoint in " + str(self.dir) + ":\n  " + "\n  ".join(errors))
        return None
