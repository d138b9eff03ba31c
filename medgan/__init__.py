"""medgan: reproducible medical-imaging GAN studies.

Layers, lowest first (imports only go downwards):
``config``/``atomic`` -> ``data`` -> ``models`` -> ``losses`` -> ``train`` -> ``metrics``
-> ``analysis`` -> ``reports``.
"""

__version__ = "0.1.0"
