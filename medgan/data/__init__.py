"""medgan.data: one module per data format or dataset, and the phantoms written in those formats.

- formats: ``dicom``, ``nifti``, ``png_folders``; shared pieces: ``base`` (errors, bad-input
  log, pseudonymous subject keys, the in-memory Dataset every loader builds on), ``splits``
  (subject-level splits written once and reused), ``transforms`` (windowing, crops, resizing);
- datasets, one loader each: ``rxrx19a``, ``nsclc_radiomics``, ``brain_ct_mri``,
  ``pet_early_delayed``, ``chest_xray``, and the in-memory ``toy_shapes`` of the quickstart;
- ``phantoms/``: one generator per dataset, writing a synthetic copy in the real on-disk layout
  with the ground truth the real data lacks (``phantoms.ensure(name)``; ``python -m medgan.data.phantoms``).

The data contract: every item is a dict with ``image`` float32 (C, H, W) in [-1, 1]; ``label``
int (or a float32 multi-label tensor; -1 when unlabelled); ``subject`` a pseudonymous str key;
optional ``target`` (C, H, W), ``mask`` (1 or K, H, W) in {0, 1}, ``truth`` (D, C, H, W) and
``meta`` (the same keys for every item). Bad input raises :class:`DataError` naming the file and
field, or with ``skip_bad=True`` is logged and counted in the loader's ``.bad_input``. Each
loader's docstring is the reference for its arguments.
"""

from medgan.data.base import BadInputLog, DataError, ItemListDataset, subject_key

__all__ = ["BadInputLog", "DataError", "ItemListDataset", "subject_key"]
