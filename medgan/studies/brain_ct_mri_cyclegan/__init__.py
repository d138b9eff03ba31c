"""Study 3 (notebook ``03_brain_ct_mri_cyclegan``): CycleGAN brain CT <-> MRI with ResNet-9 vs U-Net-256
generators, compared by FID both ways and, on the phantom, against the true counterpart of each test image.

- ``data.py``: the four Kaggle-layout folders (or the brain phantom), counts and subject overlap.
- ``jobs.py``: the two CycleGAN training jobs it registers (``resnet``, ``unet``).
- ``evaluation.py``: translating the test folders and scoring them (PSNR/SSIM/MAE, FID, baselines).
- ``figures.py``: training images, translation grids, score panels, worst cases.
- ``paper.py``: the paper's citation, setup and FID table; the claims and headline numbers of a run.
"""
