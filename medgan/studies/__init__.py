"""One package per study notebook: how the study reads its data (``data.py``), the training jobs
it registers (``jobs.py``), its evaluation, its own figures, and ``paper.py`` (the paper's
reported numbers and its claims). Everything generic lives below, in ``train``, ``metrics``,
``analysis`` and ``reports``.

| notebook | package |
|---|---|
| ``00_quickstart`` | :mod:`medgan.studies.quickstart` |
| ``01_rxrx19a_stargan_v2`` | :mod:`medgan.studies.rxrx19a_stargan_v2` |
| ``02_ct_fidelity_diversity`` | :mod:`medgan.studies.ct_fidelity_diversity` |
| ``03_brain_ct_mri_cyclegan`` | :mod:`medgan.studies.brain_ct_mri_cyclegan` |
| ``04_pet_early_to_delayed`` | :mod:`medgan.studies.pet_early_to_delayed` |
| ``05_cxr_pggan`` | :mod:`medgan.studies.cxr_pggan` |
"""

from medgan.studies.registry import available, build_job, register
from medgan.train.job import TrainingJob, run_job

__all__ = ["TrainingJob", "available", "build_job", "register", "run_job"]
