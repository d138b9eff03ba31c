"""Chest CT: a DCGAN and a PGGAN trained on the same slices, scored for fidelity and diversity
(IS, FID, KID, PRD, improved precision/recall, density/coverage). Notebook ``02_ct_fidelity_diversity``.

- ``data.py``: NSCLC-Radiomics or its phantom, windowed, cropped, resized, split by patient (ours) or by
  slice (the paper's protocol), ``data.split``.
- ``jobs.py``: the ``dcgan`` and ``pggan`` training jobs; parameter-count, hyperparameter and protocol tables.
- ``evaluation.py``: the feature extractor, the generators scored (DCGAN in ``inference_mode``), Table 1
  (in the other split mode too), k-sweep, PRD, memorisation.
- ``figures.py``: PGGAN growth, k-sweep, PRD curves, run-to-run spread, nearest-neighbour grid.
- ``paper.py``: the citation, the study's setup and Table 1, ``claims()`` and ``headlines()``.
"""
