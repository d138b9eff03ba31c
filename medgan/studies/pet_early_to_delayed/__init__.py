"""Study 4 (notebook ``04_pet_early_to_delayed``): predict the delayed FDG PET frame from the early
one with Pix2pix (paired) and CycleGAN (pairing ignored); score PSNR, SSIM and FID against the truth.

- ``data.py``: the paired early/delayed slices, split by patient (phantom or a real data root).
- ``jobs.py``: the two training jobs it registers (``04_pet_early_to_delayed:pix2pix`` and ``:cyclegan``).
- ``evaluation.py``: test-set translations, the identity baselines, scores with CIs, tumour uptake.
- ``figures.py``: the prediction grid and the worst-case grids.
- ``paper.py``: the paper's citation and reported numbers, its claims and the headline numbers.
"""
