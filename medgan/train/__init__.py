"""The one training engine and each model's step.

- :mod:`medgan.train.step` — the :class:`TrainingStep` contract a model implements.
- :mod:`medgan.train.engine` — :func:`train`: device, seeding, data order, precision, logging,
  samples, checkpoints, resume; unchanged under ``torchrun``.
- :mod:`medgan.train.checkpoint` — atomic, weights-only checkpoints.
- :mod:`medgan.train.distributed` — process group and gradient averaging.
- :mod:`medgan.train.fingerprint` — what counts as the same run (the engine keys run folders by it).
- :mod:`medgan.train.job` — :class:`TrainingJob` and :func:`run_job` (study packages build jobs).
"""

from medgan.train.checkpoint import CheckpointError, CheckpointIO
from medgan.train.engine import TrainResult, load_trained, read_log, sample_images, seed_everything, select_device, train
from medgan.train.step import StepContext, TrainingStep, ema_update, max_weight_difference, set_requires_grad

__all__ = [
    "CheckpointError", "CheckpointIO", "StepContext", "TrainResult", "TrainingStep", "ema_update",
    "load_trained", "max_weight_difference", "read_log", "sample_images", "seed_everything", "select_device", "set_requires_grad", "train",
]
