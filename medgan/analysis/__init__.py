"""Analyses on trained models: each module one method, pure functions where possible.

- :mod:`medgan.analysis.gradcam` — Grad-CAM heat maps for any conv classifier.
- :mod:`medgan.analysis.latent_axes` — disease axes in a GAN's latent space (single-finding filter,
  class-weighted regression, walks).
- :mod:`medgan.analysis.anogan` — AnoGAN latent inversion, anomaly maps and detection/localisation scores.
- :mod:`medgan.analysis.classifier_fidelity` — the train-on-real vs train-on-synthetic 3-step scheme.
- :mod:`medgan.analysis.embeddings` — t-SNE / UMAP of real vs generated features with thumbnails.
- :mod:`medgan.analysis.generative_scores` — a generator scored by the full metric suite, per seed.
- :mod:`medgan.analysis.translation_scores` — image-to-image translations scored against ground truth.
- :mod:`medgan.analysis.pet_uptake` — lesion-focused PET uptake errors (SUVmax, mean uptake).
- :mod:`medgan.analysis.style_transfer_scores` — StarGAN v2 FID/LPIPS per domain and mode, target-domain accuracy.
"""
