"""PGGAN chest X-rays (notebook ``05_cxr_pggan``): a progressive-growing GAN of radiographs, its
fidelity judged by classifiers, latent disease axes, and AnoGAN anomaly detection.

- ``data.py``: the CXR phantom or a real dataset, split by patient; label views; AnoGAN queries.
- ``jobs.py``: the training jobs (``pggan``, ``pggan_normal``, ``classifier_real``,
  ``classifier_synthetic``, ``multilabel``, ``severity``), the parameter-count table and the protocol
  table (sampling, augmentation, growth plan, inference, AnoGAN score, from the parameters).
- ``fidelity.py``: part (a), the 3-step classifier scheme (AUROC, DeLong) and Grad-CAM.
- ``latent_walks.py``: part (b), latent disease axes and the walks along them.
- ``anomaly.py``: part (c), AnoGAN against the mean-image baseline and the supervised classifier.
- ``figures.py``: the study's figures (ROC, confusion matrices, axis walks, residual maps).
- ``paper.py``: the thesis's citation, its reported numbers, ``claims()`` and ``headlines()``.
"""
