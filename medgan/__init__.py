"""medgan: reproducible medical-imaging GAN studies.

Layers, lowest first (imports only go downwards; ``tests/test_layering.py`` checks it):
``config``/``atomic`` -> ``data``, ``models``, ``losses`` -> ``train`` -> ``metrics`` -> ``analysis``
-> ``reports`` -> ``studies`` (one package per notebook) -> ``cli`` (the ``medgan`` command).
"""

__version__ = "0.1.0"

from medgan.models.portable import load_generator  # noqa: E402  (medgan.load_generator(DIR): an exported model)

__all__ = ["__version__", "load_generator"]
