"""medgan.data: loaders for the five real datasets and the phantoms written in their formats.

Every Dataset item is a dict (see the data contract):
``image`` float32 (C, H, W) in [-1, 1]; ``label`` int (or float32 multi-label tensor; -1 when
unlabelled); ``subject`` pseudonymous str key ("s-" + 12 hex); optional ``target`` (C, H, W),
``mask`` (1 or K, H, W) float {0, 1}, ``truth`` (D, C, H, W); ``meta`` dict of str/int/float
with the same keys for every item. Every loader has ``.bad_input`` (a :class:`BadInputLog`:
``.skipped`` list of (where, message), ``.count``) and ``.subjects``; split-aware loaders have
``.split_map``. Bad input raises :class:`DataError` naming the file and field, or with
``skip_bad=True`` is logged (logger "medgan.data") and counted.

API index (module -> public names)
----------------------------------
``medgan.data.base``
    ``DataError(ValueError)``; ``subject_key(raw_id, *, salt=None) -> str`` (salted SHA-256;
    salt from ``$MEDGAN_SUBJECT_SALT`` or a fixed default); ``BadInputLog(*, skip_bad, name)``;
    ``ItemListDataset(records, *, transform=None)`` (base of every loader; in-memory).
``medgan.data.splits``
    ``subject_split(subjects, *, fractions, seed, path) -> dict[str, str]`` (JSON written
    atomically, reused when subjects/fractions/seed match);
    ``split_path(root, *, fractions, seed) -> Path`` (``root/splits_seed{seed}_train80-val10-test10.json``).
    Loaders split over *all* subjects on disk before any filter, so every setting agrees.
``medgan.data.transforms``
    ``window(values, *, low, high)``, ``window_hu(hu, *, center_hu, width_hu)`` -> [-1, 1];
    ``center_crop(arr, size)``, ``center_crop_or_pad(arr, size, *, fill)``,
    ``resize(arr, size, *, mode="area")``, ``nearest_resize(mask, size)`` (last two axes).
``medgan.data.dicom``
    ``read_dicom(path, *, stop_before_pixels=False)``; ``pixel_values(ds, path)`` (modality LUT,
    float32); ``to_hu(ds, path)``; ``suv_factor(ds, path)``; ``suv_factor_from_values(*, dose_bq,
    half_life_s, weight_kg, injection_time, scan_time)``;
    ``find_series(root, *, modality, salt=None, log=None) -> list[SeriesFiles]`` (by Modality tag);
    ``load_series(files, *, salt=None, spacing_tolerance=0.05, log=None, apply_suv=True) -> Volume``
    (``.array`` (Z,Y,X) float32 HU/SUVbw, ``.spacing_mm`` (z,y,x), ``.positions_mm``, ``.subject``,
    ``.n_duplicates_dropped``); ``write_slice(path, stored, *, modality, patient_id, ...)``.
``medgan.data.nifti``
    ``read_nifti(path) -> (array (Z,Y,X) float32, spacing_mm (z,y,x))``; ``write_nifti(path, array, spacing_mm)``.
``medgan.data.png_folders``
    ``list_images(folder)``, ``read_png(path, *, grayscale=True)``, ``write_png(path, array)``.
``medgan.data.nsclc_radiomics`` (study 2)
    ``NSCLCRadiomics(root, *, split=None, window_center_hu=-600, window_width_hu=1500,
    crop_size=160, image_size=128, histologies=None, with_masks=False, tumour_slices_only=False,
    clinical_csv=None, split_fractions=(0.8, 0.1, 0.1), split_seed=0, skip_bad=False, cache=True)``
    image (1,S,S); label 1 died / 0 alive (deadstatus.event); meta {histology, slice_index, z_mm,
    n_slices, spacing_z_mm, pixel_spacing_mm}. Phantom default: 128x128 slices -> use crop_size=96,
    image_size=64. ``read_clinical(path)``.
``medgan.data.brain_ct_mri`` (study 3)
    ``BrainCTMRI(root, *, domain="A"|"B", part="train"|"test", image_size=64, crop_pad_size=None,
    a_modality="ct", with_truth=False, skip_bad=False)``; label 0 CT / 1 MRI; ``target`` = true
    counterpart (phantom test sets). meta {modality, domain, part, file_index}.
``medgan.data.pet_early_delayed`` (study 4)
    ``PETEarlyDelayed(root, *, split=None, suv_max=15.0, image_size=None,
    split_fractions=(0.67, 0.0, 0.33), split_seed=0, skip_bad=False, with_masks=False,
    nifti_without_sidecar="error", min_body_suv=0.0)``: image = early, target = delayed slice
    (same patient, same z), SUV/suv_max -> [-1, 1]; label -1; meta {slice_index, z_mm,
    spacing_z_mm, pixel_spacing_mm, suv_max, n_slices}. ``nifti_suv_factor(sidecar)``.
``medgan.data.rxrx19a`` (study 1)
    ``RxRx19a(root, *, cell_type="HRCE", domains=STUDY_DOMAINS, treatment_aliases=None,
    concentrations_um=None, crop_size=64, crop_mode="tiles"|"cells", max_cells_per_site=None,
    min_nucleus_px=12, image_size=64, max_sites_per_domain=None,
    with_truth=False, split=None, split_fractions=(0.8, 0.1, 0.1), split_seed=0, skip_bad=False)``
    image (5,S,S) stains w1..w5; label = domain index (``.domain_names``); subject = well;
    ``truth`` (n_domains, 5, S, S) the same crop in every domain (phantom); ``.match_report``;
    ``match_treatments(names, aliases)``; ``STUDY_DOMAINS``, ``STAINS``, ``DEFAULT_TREATMENT_ALIASES``.
``medgan.data.chest_xray`` (study 5)
    ``ChestXray(root, *, labels_csv="Data_Entry.csv", image_dir="images", image_size=64,
    findings=FINDINGS, finding_aliases=None, label_mode="findings"|"abnormal", normal_only=False,
    abnormal_only=False, view_positions=None, with_masks=False, mask_findings=None, split=None,
    split_fractions=(0.7, 0.1, 0.2), split_seed=0, skip_bad=False, low_percentile=0.0,
    high_percentile=99.0, normalise_png=False, max_images=None)``; label float32 (5,) or int;
    ``mask`` (K,S,S) over ``phantoms.cxr.ALL_FINDINGS`` (5 trained + 5 untrained); meta
    {abnormal, n_findings, finding_labels, view_position, other_findings}.
``medgan.data.toy_shapes``
    ``ToyShapes(n, *, size=32, seed=0)``: in-memory discs and squares for the quickstart
``medgan.data.phantoms``
    ``ensure(name, *, root=None, **options) -> Path`` for name in ``NAMES`` =
    ("cells", "chest_ct", "brain", "pet", "cxr"): folder ``(root or data_dir()/"phantoms")/<name>-<hash>``;
    each generator module has ``DEFAULTS`` (default profile), ``SMOKE`` (tests) and ``generate``.
    ``profile_options(name, profile="default")`` = ``data.phantom`` of the study's params profile;
    ``python -m medgan.data.phantoms --all [--profile default] [--root DIR]`` (``make data``).
    ``medgan.data.phantoms.preview.preview_figure(name, root, *, n_samples=4) -> Figure``.
    Ground truth lives in ``<phantom>/truth/`` (see each generator's docstring).
"""

from medgan.data.base import BadInputLog, DataError, ItemListDataset, subject_key  # noqa: F401
