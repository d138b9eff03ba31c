"""Network architectures, one module per family (no training logic here).

- :mod:`medgan.models.dcgan` — DCGAN generator/discriminator for any power-of-two size (study 2, quickstart).
- :mod:`medgan.models.pggan` — progressive GAN: equalised LR, pixel norm, minibatch stddev, fade-in (studies 2, 5).
- :mod:`medgan.models.image_to_image` — ResNet-9/6 and U-Net-256/128 generators (``define_generator``), the
  70x70 PatchGAN discriminator; shared by CycleGAN (studies 3, 4) and Pix2pix (study 4).
- :mod:`medgan.models.stargan_v2` — StarGAN v2 generator, mapping network, style encoder, multi-task
  discriminator for any number of channels (study 1).
- :mod:`medgan.models.classifiers` — ResNet classifiers for any input channels, no downloaded weights
  (study 5's classifiers, study 1's domain classifier).

- :mod:`medgan.models.blocks` — pieces every family shares (``count_parameters``).

Import the module you need, e.g. ``from medgan.models.pggan import build_pggan``.
"""
