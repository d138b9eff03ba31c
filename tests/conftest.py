"""Test-wide settings."""

import os
import tempfile

import torch

# Splits, caches and the site salt go to a work folder, never into the data or the checkout.
os.environ.setdefault("MEDGAN_WORKDIR", tempfile.mkdtemp(prefix="medgan-test-work-"))

# Tiny models on 2 cores: one thread per process avoids oversubscription when pytest-xdist
# runs several workers (and it is what makes CPU timings in the suite repeatable).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)
