"""Test-wide settings."""

import os

import torch

# Tiny models on 2 cores: one thread per process avoids oversubscription when pytest-xdist
# runs several workers (and it is what makes CPU timings in the suite repeatable).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)
