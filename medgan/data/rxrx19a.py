"""RxRx19a cell-painting loader: 5-stain sites -> crops labelled by study domain.

Layout: ``<root>/metadata.csv`` (site_id, well_id, cell_type, experiment, plate, well, site,
disease_condition, treatment, treatment_conc, SMILES) and
``<root>/images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png`` (8-bit, w1..w5 =
Hoechst, ConA, Phalloidin, Syto14, WGA). Channels are stacked to (5, H, W), scaled /255 to
[-1, 1], tiled into ``crop_size`` crops (or used whole) and resized to ``image_size``.

Treatment names vary in spelling, so they are matched *explicitly*: ``treatment_aliases`` maps a
canonical name to the exact spellings accepted (case and surrounding spaces ignored).
:func:`match_treatments` reports what matched and which similar-looking names did not.
Subjects (for splits) are wells: sites of one well never straddle two splits, and every condition
has wells in as many splits as its well count allows (:func:`cover_conditions`).

Building a dataset reads ``metadata.csv`` and checks each selected site's files; the sites are
decoded once (:func:`decode_site`, in ``num_workers`` processes) into an item store in the
dataset's work folder (:mod:`medgan.data.item_store`), keyed by the files and every crop setting,
and crops are read from it per item.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image
from skimage import filters, measure
from tqdm.auto import tqdm

from medgan.data.base import BadInputLog, DataError, ItemListDataset, filter_by_split, logger, read_csv_text, subject_key
from medgan.data.base import reads_data_root
from medgan.data.item_store import build_store
from medgan.data.png_folders import read_png
from medgan.data.splits import _normalise_fractions, split_path, subject_split
from medgan.data.transforms import resize

STAINS = ("Hoechst", "ConA", "Phalloidin", "Syto14", "WGA")
METADATA_COLUMNS = ("site_id", "well_id", "cell_type", "experiment", "plate", "well", "site",
                    "disease_condition", "treatment", "treatment_conc", "SMILES")
DISEASE_CONDITIONS = ("Active SARS-CoV-2", "UV Inactivated SARS-CoV-2", "Mock", "")
DEFAULT_TREATMENT_ALIASES = {
    "Remdesivir": ["Remdesivir", "Remdesivir (GS-5734)", "GS-5734"],
    "Aloxistatin": ["Aloxistatin", "Aloxistatin (E-64d)", "E-64d", "E64d"],
    "Pacritinib": ["Pacritinib", "Pacritinib (SB1518)", "SB1518"],
}
# The study's 4 domains: (name, disease_condition, canonical treatment or None = untreated)
STUDY_DOMAINS = (("Active", "Active SARS-CoV-2", None),
                 ("Active+Aloxistatin", "Active SARS-CoV-2", "Aloxistatin"),
                 ("Active+Pacritinib", "Active SARS-CoV-2", "Pacritinib"),
                 ("Active+Remdesivir", "Active SARS-CoV-2", "Remdesivir"))


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower())


def match_treatments(names: Sequence[str], aliases: dict[str, Sequence[str]]) -> dict:
    """Explicit matching of raw treatment names to canonical names.

    Returns ``{"matched": {canonical: [raw names]}, "near_misses": {canonical: [raw names that
    contain the canonical word but are not listed as aliases]}, "mapping": {raw: canonical}}``.
    Near misses are *not* used; they are reported so the user can add them to the aliases.
    """
    lookup = {_norm(alias): canonical for canonical, spellings in aliases.items() for alias in spellings}
    matched = {canonical: [] for canonical in aliases}
    near = {canonical: [] for canonical in aliases}
    mapping = {}
    for raw in sorted({str(n) for n in names if isinstance(n, str) and n.strip()}):
        canonical = lookup.get(_norm(raw))
        if canonical:
            matched[canonical].append(raw)
            mapping[raw] = canonical
            continue
        for candidate in aliases:
            if _norm(candidate) in _norm(raw):
                near[candidate].append(raw)
    return {"matched": matched, "near_misses": {k: v for k, v in near.items() if v}, "mapping": mapping}


# columns that locate a site's images and its subject; blank values would merge sites or wells
ID_COLUMNS = ("site_id", "well_id", "experiment", "plate", "well", "site")



def read_metadata(path: Path, *, bad_input: BadInputLog | None = None) -> pd.DataFrame:
    """metadata.csv as text columns plus ``treatment_conc_um`` (float).

    Rows with a blank ID column (:data:`ID_COLUMNS`) or a non-integer ``site``, and sites listed
    twice with different values, are bad input (``bad_input.problem``: error, or skipped and
    counted). Identical repeated rows are collapsed to one; their count is in
    ``table.attrs["duplicates_collapsed"]``. Unknown disease conditions and non-numeric
    concentrations raise :class:`DataError`.
    """
    bad_input = bad_input or BadInputLog(name="RxRx19a")
    table = read_csv_text(path, "metadata.csv")
    missing = [c for c in METADATA_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    for column in METADATA_COLUMNS:
        table[column] = table[column].str.strip()
    table = table.assign(_row=np.arange(len(table)) + 2)  # CSV line numbers (header = line 1)
    bad_rows = set()
    for column in ID_COLUMNS:
        for line in table.loc[table[column] == "", "_row"]:
            bad_input.problem(path, f"{column}: blank in row {line} (a blank ID would merge sites)")
            bad_rows.add(line)
    not_int = ~table["site"].str.fullmatch(r"\d+") & (table["site"] != "")
    for line in table.loc[not_int, "_row"]:
        bad_input.problem(path, f"site: not an integer in row {line}")
        bad_rows.add(line)
    table = table[~table["_row"].isin(bad_rows)]
    table, collapsed = _dedupe_sites(table, path, bad_input)
    unknown = sorted(set(table["disease_condition"]) - set(DISEASE_CONDITIONS))
    if unknown:
        raise DataError(f"{path}: disease_condition has unknown value(s) {unknown[:5]}")
    conc = pd.to_numeric(table["treatment_conc"].replace("", np.nan), errors="coerce")
    bad = conc.isna() & (table["treatment_conc"] != "")
    if bad.any():
        raise DataError(f"{path}: treatment_conc not numeric in row(s) {table.loc[bad, '_row'].tolist()[:5]}")
    table = table.assign(treatment_conc_um=conc.fillna(0.0).astype(float)).drop(columns="_row")
    table.attrs["duplicates_collapsed"] = collapsed
    return table.reset_index(drop=True)


def _dedupe_sites(table: pd.DataFrame, path: Path, bad_input: BadInputLog) -> tuple[pd.DataFrame, int]:
    """Collapse identical repeated rows; a site_id, or a site's image location, listed with
    different values is bad input (every row of it dropped when skipped)."""
    columns = list(METADATA_COLUMNS)
    identical = table.duplicated(subset=columns, keep="first")
    collapsed = int(identical.sum())
    if collapsed:
        logger.warning("%s: %d identical repeated row(s) collapsed", path, collapsed)
    table = table[~identical]
    drop = set()
    for key, label in ((["site_id"], "site_id"), (["experiment", "plate", "well", "site"], "image location")):
        left = table[~table["_row"].isin(drop)]  # one problem per conflict, not one per key
        repeated = left[left.duplicated(subset=key, keep=False)]
        for value, rows in repeated.groupby(key, sort=True):
            differing = [c for c in columns if rows[c].nunique() > 1]
            shown = value if len(key) > 1 else value[0]
            bad_input.problem(path, f"{', '.join(differing)}: {label} {shown!r} listed in rows "
                                    f"{rows['_row'].tolist()} with different values")
            drop.update(rows["_row"])
    return table[~table["_row"].isin(drop)], collapsed


class Site(NamedTuple):
    """One site to decode: where its PNGs are, its label and what its crops carry (picklable)."""

    folder: str  # the plate folder holding ``{well}_s{site}_w{1..5}.png``
    well: str
    site: int
    truth: str | None  # ``truth/fields/<site_id>.npz`` (phantoms, ``with_truth``), else None
    label: int
    subject: str
    meta: dict

    def channel_paths(self) -> list[Path]:
        return [Path(self.folder) / f"{self.well}_s{self.site}_w{c}.png" for c in range(1, len(STAINS) + 1)]

    def where(self) -> Path:
        return Path(self.folder) / f"{self.well}_s{self.site}"


def decode_site(entry: Site, *, crop_size: int | None, crop_mode: str, max_cells_per_site: int | None,
                min_nucleus_px: int, image_size: int, with_truth: bool, domains: Sequence) -> list[dict]:
    """The item store's decode function: one :class:`Site` -> its finished crops (settings bound with
    ``functools.partial``; ``domains``: (name, disease_condition, treatment or None) in label order,
    the truth renders kept). Bump ``decode_site.version`` whenever the crops it writes change."""
    site = _read_site(entry)
    truth, truth_names = _read_truth(entry) if with_truth else (None, None)
    crops = (_tiles(site, truth, crop_size) if crop_mode == "tiles" else
             _cell_crops(site, truth, crop_size, max_cells_per_site, min_nucleus_px))
    items = []
    for tile_index, (tile, truth_tile) in enumerate(crops):
        item = {"image": resize(tile, image_size), "label": entry.label, "subject": entry.subject,
                "meta": {**entry.meta, "tile": tile_index}}
        if with_truth:
            item["truth"] = np.stack([resize(truth_tile[_truth_index(truth_names, tuple(d))], image_size)
                                      for d in domains])
        items.append(item)
    return items


decode_site.version = 1


class RxRx19a(ItemListDataset):
    """Crops of RxRx19a sites labelled by domain.

    Args:
        root: folder with ``metadata.csv`` and ``images/``.
        cell_type: "HRCE" or "VERO" (None keeps both).
        domains: sequence of (name, disease_condition, canonical treatment or None); label = index.
        treatment_aliases: canonical -> accepted spellings (see :func:`match_treatments`).
        concentrations_um: keep treated wells at these concentrations (None keeps all;
            untreated wells are always kept).
        crop_size: side of the crops cut from each site in px (None = the whole site).
        crop_mode: "tiles" (non-overlapping grid) or "cells" (one crop centred on each nucleus
            found in the Hoechst channel by Otsu threshold + connected components, as the study
            used one cell per image; nuclei too close to the border are skipped).
        max_cells_per_site: cap on "cells" crops per site (None = all). min_nucleus_px: smallest
            nucleus area counted.
        image_size: resize each crop to this side. max_sites_per_domain: cap (None = all).
        with_truth: add ``truth`` (n_domains, 5, S, S): the same crop rendered in every domain,
            from ``truth/fields/<site_id>.npz`` (phantoms only).
        split: a split name, or several (their crops in that order), or None (every well);
            split_fractions, split_seed: the split by well (in the dataset's work folder). Every
            condition (cell type, disease, treatment, concentration) has wells in as many splits
            as its well count allows (:func:`cover_conditions`), so no domain is left without
            held-out wells by chance.
        skip_bad: skip (log, count) sites with missing/unreadable/wrong-channel PNGs.
        num_workers: processes decoding sites when the item store is first built (0: this one).
        progress: progress bars while indexing and decoding.

    Construction reads ``metadata.csv`` and checks each selected site's files (cheap); the crops
    are decoded once into an item store in the work folder (:mod:`medgan.data.item_store`) and
    read from disk per item after, so memory does not grow with the number of sites.

    Items: image (5, S, S) in [-1, 1]; label domain index; subject = pseudonymous well key;
    meta {domain, cell_type, treatment, concentration_um, site, tile}. ``.match_report`` holds
    the treatment matching; ``.domain_names`` the label names; ``.split_map`` well key -> split.
    """

    @reads_data_root()  # plates and wells, no patient folders
    def __init__(self, root: str | os.PathLike, *, cell_type: str | None = "HRCE",
                 domains=STUDY_DOMAINS, treatment_aliases: dict | None = None,
                 concentrations_um: Sequence[float] | None = None, crop_size: int | None = 64,
                 crop_mode: str = "tiles", max_cells_per_site: int | None = None, min_nucleus_px: int = 12,
                 image_size: int = 64, max_sites_per_domain: int | None = None, with_truth: bool = False,
                 split: str | Sequence[str] | None = None, split_fractions=(0.8, 0.1, 0.1), split_seed: int = 0,
                 skip_bad: bool = False, num_workers: int = 0, progress: bool = False):
        root = Path(root)
        if crop_mode not in ("tiles", "cells"):
            raise ValueError(f"crop_mode must be 'tiles' or 'cells', got {crop_mode!r}")
        if crop_mode == "cells" and crop_size is None:
            raise DataError("crop_mode='cells' needs a crop_size")
        domains = tuple((str(n), str(d), None if t is None else str(t)) for n, d, t in domains)
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="RxRx19a")
        table = read_metadata(root / "metadata.csv", bad_input=self.bad_input)
        self.duplicates_collapsed = table.attrs["duplicates_collapsed"]  # identical repeated metadata rows
        aliases = treatment_aliases or DEFAULT_TREATMENT_ALIASES
        self.match_report = match_treatments(table["treatment"].tolist(), aliases)
        table["treatment_canonical"] = table["treatment"].map(self.match_report["mapping"]).fillna("")
        # split over every well of the metadata (not only the selected ones), so any filter
        # setting sees the same assignment of a well
        table["subject"] = [subject_key(f"rxrx:{w}") for w in table["well_id"].astype(str)]
        wells = sorted(set(table["subject"]))
        self.split_map = cover_conditions(
            subject_split(wells, fractions=split_fractions, seed=split_seed,
                          path=split_path(root, fractions=split_fractions, seed=split_seed)),
            table.groupby(list(CONDITION_COLUMNS), sort=True)["subject"].apply(lambda s: sorted(set(s))).tolist(),
            order=[name for name, fraction in _normalise_fractions(split_fractions).items() if fraction > 0])
        splits = [None] if split is None else [split] if isinstance(split, str) else list(split)
        keep = [filter_by_split(wells, self.split_map, name) for name in splits]
        if cell_type is not None:
            table = table[table["cell_type"] == cell_type]
        self.domain_names = [d[0] for d in domains]
        selected = []
        for label, (name, disease, treatment) in enumerate(domains):
            rows = table[table["disease_condition"] == disease]
            if treatment is None:
                rows = rows[rows["treatment"].str.strip() == ""]
            else:
                if treatment not in aliases:
                    raise DataError(f"domain {name!r}: treatment {treatment!r} has no entry in treatment_aliases")
                rows = rows[rows["treatment_canonical"] == treatment]
                if concentrations_um is not None:
                    wanted = np.asarray(concentrations_um, float)
                    rows = rows[np.isclose(rows["treatment_conc_um"].to_numpy()[:, None], wanted[None]).any(1)]
            if max_sites_per_domain is not None:
                rows = rows.iloc[:max_sites_per_domain]
            if rows.empty:
                raise DataError(f"{root / 'metadata.csv'}: no sites for domain {name!r} "
                                f"(cell_type={cell_type}, disease_condition={disease!r}, treatment={treatment!r})")
            selected += [(label, row) for row in rows.to_dict("records")]
        entries, files = [], []
        for kept in keep:  # one split after the other, each in domain and metadata order
            for label, row in tqdm(selected, desc="RxRx19a: indexing", disable=not progress):
                if row["subject"] not in kept:
                    continue
                entry = self._index_site(root, row, label, with_truth)
                if entry is not None:
                    entries.append(entry)
                    files += entry.channel_paths() + ([Path(entry.truth)] if entry.truth else [])
        if not entries:
            raise DataError(f"{root}: no crops left (split={split!r}, {self.bad_input.count} site(s) skipped)")
        settings = dict(crop_size=crop_size, crop_mode=crop_mode, max_cells_per_site=max_cells_per_site,
                        min_nucleus_px=min_nucleus_px, image_size=image_size, with_truth=with_truth, domains=domains)
        store = build_store(entries, functools.partial(decode_site, **settings), name="rxrx19a", root=root,
                            files=files, settings=settings, bad_input=self.bad_input, where=Site.where,
                            num_workers=num_workers, progress=progress,
                            expected_items=len(entries) * _crops_per_site(entries[0], crop_size, crop_mode,
                                                                          max_cells_per_site))
        super().__init__(store)

    def _index_site(self, root: Path, row: dict, label: int, with_truth: bool) -> Site | None:
        """The :class:`Site` of one metadata row, its files checked (stat only); None when skipped."""
        folder = root / "images" / str(row["experiment"]) / f"Plate{row['plate']}"
        truth = root / "truth" / "fields" / f"{row['site_id']}.npz" if with_truth else None
        site = Site(folder=str(folder), well=str(row["well"]), site=int(row["site"]),
                    truth=None if truth is None else str(truth), label=label, subject=row["subject"],
                    meta={"domain": self.domain_names[label], "cell_type": str(row["cell_type"]),
                          "treatment": str(row["treatment"]), "concentration_um": float(row["treatment_conc_um"]),
                          "site": int(row["site"])})
        try:
            for channel, path in enumerate(site.channel_paths(), start=1):
                if not path.is_file():
                    raise DataError(f"{path}: file named in metadata.csv is missing (channel w{channel})")
            if truth is not None and not truth.is_file():
                raise DataError(f"{truth}: truth renders missing (with_truth needs a phantom)")
        except DataError as exc:
            self.bad_input.reject(exc, site.where())
            return None
        return site


# columns that say a well's condition: the split gives every condition wells in every split it can
CONDITION_COLUMNS = ("cell_type", "disease_condition", "treatment", "treatment_conc")


def cover_conditions(mapping: dict[str, str], groups: Sequence[Sequence[str]], *, order: Sequence[str]) -> dict[str, str]:
    """A well split in which every condition group reaches as many splits as it has wells.

    ``mapping``: well key -> split (the seeded random split); ``groups``: the well keys of each
    condition; ``order``: the split names with a positive fraction, most important first. A
    group of n wells that misses one of the first n names gets a well moved there, taken from
    the split holding most of its wells (from a name it need not cover when there is one), the
    last key of that split first. Groups that already cover their splits keep the random split
    unchanged, so large datasets are left as they were.
    """
    mapping = dict(mapping)
    for wells in groups:
        wells = sorted(wells)
        wanted = list(order)[:len(wells)]
        for name in wanted:
            held = {}
            for well in wells:
                held.setdefault(mapping[well], []).append(well)
            if name in held:
                continue
            donors = [s for s in held if len(held[s]) > 1 or s not in wanted]
            donor = max(donors, key=lambda s: (s not in wanted, len(held[s]), -list(order).index(s)))
            mapping[held[donor][-1]] = name
    return mapping


def _crops_per_site(entry: Site, crop_size: int | None, crop_mode: str, max_cells: int | None) -> int:
    """Crops one site gives, from the first channel's PNG header (for the free-space check)."""
    try:
        with Image.open(entry.channel_paths()[0]) as image:
            width, height = image.size
    except OSError:
        return 1
    tiles = 1 if crop_size is None else max(1, (height // crop_size) * (width // crop_size))
    return tiles if crop_mode == "tiles" or max_cells is None else max(tiles, max_cells)


def _read_site(entry: Site) -> np.ndarray:
    """The site's 5 stains as float32 (5, H, W) in [-1, 1]."""
    channels = []
    for channel, path in enumerate(entry.channel_paths(), start=1):
        if not path.is_file():
            raise DataError(f"{path}: file named in metadata.csv is missing (channel w{channel})")
        pixels = read_png(path, grayscale=False)
        if pixels.ndim != 2:
            raise DataError(f"{path}: wrong channel count: expected 1 (grayscale) per file, got {pixels.shape[-1]}")
        if pixels.dtype != np.uint8:
            raise DataError(f"{path}: expected 8-bit, got {pixels.dtype}")
        channels.append(pixels)
    shapes = {c.shape for c in channels}
    if len(shapes) > 1:
        raise DataError(f"{entry.where()}: channel images differ in size {sorted(shapes)}")
    return np.stack(channels).astype(np.float32) / 127.5 - 1.0


def _read_truth(entry: Site) -> tuple[np.ndarray, list[str]]:
    """The site rendered under every phantom condition, float32 (n_conditions, 5, H, W), and their names."""
    path = Path(entry.truth)
    try:
        with np.load(path) as stored:
            return stored["images"].astype(np.float32) / 127.5 - 1.0, [str(c) for c in stored["conditions"]]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: truth renders unreadable ({type(exc).__name__}: {exc})") from exc


def _cell_crops(site, truth, crop_size, max_cells, min_area_px):
    h, w = site.shape[-2:]
    half = crop_size // 2
    count = 0
    for cy, cx in _nucleus_centres(site[0], min_area_px=min_area_px):
        top, left = cy - half, cx - half
        if top < 0 or left < 0 or top + crop_size > h or left + crop_size > w:
            continue
        if max_cells is not None and count >= max_cells:
            break
        window = (..., slice(top, top + crop_size), slice(left, left + crop_size))
        count += 1
        yield site[window], (truth[window] if truth is not None else None)


def _tiles(site: np.ndarray, truth: np.ndarray | None, crop_size: int | None):
    if crop_size is None:
        yield site, truth
        return
    h, w = site.shape[-2:]
    if crop_size > min(h, w):
        raise DataError(f"crop_size {crop_size} larger than the site images ({h}x{w})")
    for top in range(0, h - crop_size + 1, crop_size):
        for left in range(0, w - crop_size + 1, crop_size):
            window = (..., slice(top, top + crop_size), slice(left, left + crop_size))
            yield site[window], (truth[window] if truth is not None else None)


def _nucleus_centres(hoechst: np.ndarray, *, min_area_px: int) -> list[tuple[int, int]]:
    """Centroids (row, col) of nuclei in a Hoechst image: Otsu threshold, connected components."""
    if float(hoechst.max()) <= float(hoechst.min()):
        return []
    foreground = hoechst > filters.threshold_otsu(hoechst)
    regions = [r for r in measure.regionprops(measure.label(foreground)) if r.area >= min_area_px]
    return [(int(round(r.centroid[0])), int(round(r.centroid[1]))) for r in regions]


def _truth_index(truth_names: list[str], domain) -> int:
    name, disease, treatment = domain
    wanted = disease if treatment is None else f"{disease} + {treatment}"
    if wanted not in truth_names:
        raise DataError(f"truth renders have no condition {wanted!r} (have {truth_names})")
    return truth_names.index(wanted)
