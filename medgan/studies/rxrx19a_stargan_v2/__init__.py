"""Study 1 (notebook ``01_rxrx19a_stargan_v2``): StarGAN v2 translates SARS-CoV-2-infected cell-painting
crops (RxRx19a, 5 stains) into their look under 3 drugs, scored by FID, LPIPS and Grad-CAM over training.

- ``data.py``: the RxRx19a crops of the 4 domains, split by well, as datasets read per item; the treatment-name matches.
- ``jobs.py``: the training job it registers (``01_rxrx19a_stargan_v2:stargan_v2``).
- ``evaluation.py``: the scorers (trained on real crops), scores over training, baselines, Grad-CAM panels.
- ``figures.py``: stain composites, translation grids, Grad-CAM overlays, curves over training.
- ``paper.py``: the paper's citation and reported results, ``claims()`` and ``headlines()``.
"""
