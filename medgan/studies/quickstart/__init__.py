"""Quickstart (notebook ``00_quickstart``): a tiny DCGAN through the engine, the template for a study.

- ``jobs.py``: the one training job it registers (``00_quickstart:dcgan``).

A full study adds ``data.py`` (how it reads its data), ``evaluation.py``, ``figures.py`` and
``paper.py`` (the paper's numbers and claims); see :mod:`medgan.studies`.
"""
