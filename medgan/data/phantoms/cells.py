"""Cell-painting phantom in the RxRx19a layout (metadata.csv + 5-channel PNG sites).

Each field holds ~15-25 cells; every cell is rendered in 5 stains: w1 Hoechst (nucleus, with
texture), w2 ConA (perinuclear ER, reticular), w3 Phalloidin (cortical actin + stress fibres),
w4 Syto14 (nucleoli + cytoplasmic RNA), w5 WGA (membranes + a Golgi spot).

Condition model (component severities shape, nucleus, actin, rna, syncytia in [0, 1]):
Active SARS-CoV-2 -> cell rounding and shrinking, nuclear condensation, loss of actin fibres,
cytoplasmic RNA, syncytia (neighbouring cells fuse, keeping several nuclei); UV-inactivated ->
a faint response; Mock -> none. Drugs rescue partly and differently, with a concentration
response h(c) = c / (c + 1 uM): Remdesivir damps every component, Aloxistatin mostly shape
and syncytia (and brightens ER itself), Pacritinib mostly actin (and enlarges nuclei itself).
An inert decoy compound has no effect. Random draws belong to the *field* (cell layout and
per-cell thresholds), so the same field can be rendered under every condition: those renders
are the ground truth, ``truth/fields/<site_id>.npz`` with ``images`` (n_conditions, 5, H, W)
uint8 and ``conditions`` (names, see :data:`TRUTH_CONDITIONS`) at ``truth_concentration_um``.

:func:`paper_size` gives the options of a paper-size set: RxRx19a's 1024 x 1024 px sites (cell
size as in the small sets, so ~1,400 cells a site), few of them. A 1024-px site renders in about a
second; its sites render in worker processes.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from medgan import atomic
from medgan.data.phantoms._shapes import smooth_noise
from medgan.data.png_folders import write_png

DEFAULTS = {"cell_types": ["HRCE", "VERO"], "wells_per_condition": 2, "sites_per_well": 3, "field_size": 128,
            "concentrations_um": [0.1, 1.0, 3.0, 10.0], "truth_concentration_um": 10.0, "seed": 0}
SMOKE = {"cell_types": ["HRCE"], "wells_per_condition": 1, "sites_per_well": 1, "field_size": 64,
         "concentrations_um": [10.0]}
SITE_SIZE_PX = 1024  # RxRx19a sites are 1024 x 1024 px per stain
PARALLEL_FIELD_PX = 512  # fields this large render in worker processes (smaller ones: process start-up dominates)
# raw spellings written into metadata.csv: the loader has to match them explicitly
TREATMENT_SPELLING = {"Remdesivir": "Remdesivir (GS-5734)", "Aloxistatin": "Aloxistatin (E-64d)",
                      "Pacritinib": "pacritinib", "Decoy": "GSK-000123"}
TRUTH_CONDITIONS = ["Mock", "UV Inactivated SARS-CoV-2", "Active SARS-CoV-2",
                    "Active SARS-CoV-2 + Aloxistatin", "Active SARS-CoV-2 + Pacritinib",
                    "Active SARS-CoV-2 + Remdesivir"]
COMPONENTS = ("shape", "nucleus", "actin", "rna", "syncytia")
METADATA_COLUMNS = ["site_id", "well_id", "cell_type", "experiment", "plate", "well", "site",
                    "disease_condition", "treatment", "treatment_conc", "SMILES"]
SMILES = {"Remdesivir": "CCC(CC)COC(=O)[C@H](C)N[P@](=O)(OC[C@@H]1[C@H]([C@H]([C@](O1)(C#N)C2=CC=C3N2N=CN=C3N)O)O)OC4=CC=CC=C4",
          "Aloxistatin": "CCOC(=O)[C@H]1O[C@@H]1C(=O)N[C@@H](CC(C)C)C(=O)NCCC(C)C",
          "Pacritinib": "C1CCN(C1)CCOC2=C(C=C3C=CC=C(C3)OCC=CCOCC4=CC=CC(=C4)NC5=NC=CC2=N5)",
          "Decoy": "CC(=O)OC1=CC=CC=C1C(=O)O"}


def condition_effects(disease: str, treatment: str | None, concentration_um: float, cell_type: str) -> dict:
    """Severity per component in [0, 1] plus drug side effects (``er_gain``, ``nucleus_gain``)."""
    base = {"Active SARS-CoV-2": 1.0, "UV Inactivated SARS-CoV-2": 0.12, "Mock": 0.0, "": 0.0}[disease]
    base *= 1.0 if cell_type == "VERO" else 0.85
    effects = {c: base for c in COMPONENTS}
    effects["syncytia"] = effects["syncytia"] if disease == "Active SARS-CoV-2" else 0.0
    h = concentration_um / (concentration_um + 1.0) if treatment else 0.0
    rescue = {"Remdesivir": dict(shape=0.85, nucleus=0.85, actin=0.85, rna=0.9, syncytia=0.9),
              "Aloxistatin": dict(shape=0.8, nucleus=0.3, actin=0.45, rna=0.55, syncytia=0.85),
              "Pacritinib": dict(shape=0.55, nucleus=0.1, actin=0.9, rna=0.2, syncytia=0.25)}.get(treatment or "", {})
    for component, strength in rescue.items():
        effects[component] *= 1 - strength * h
    effects["er_gain"] = 0.5 * h if treatment == "Aloxistatin" else 0.0
    effects["nucleus_gain"] = 0.2 * h if treatment == "Pacritinib" else 0.0
    return effects


def field_layout(rng: np.random.Generator, size: int) -> dict:
    """Cell positions and per-cell random draws for one field (shared by all its renders)."""
    n = int(rng.integers(14, 24) * (size / 128) ** 2) + 3
    # jittered grid keeps cells from piling up
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    cells = []
    for i in range(n):
        gy, gx = divmod(i, cols)
        cells.append(dict(
            y=(gy + 0.5 + rng.uniform(-0.3, 0.3)) * size / rows, x=(gx + 0.5 + rng.uniform(-0.3, 0.3)) * size / cols,
            radius=rng.uniform(0.45, 0.62) * size / np.sqrt(rows * cols), elongation=rng.uniform(1.2, 1.9),
            angle=rng.uniform(0, np.pi), nucleus=rng.uniform(0.4, 0.5), nuc_offset=rng.uniform(-0.12, 0.12, 2),
            bright=rng.uniform(0.75, 1.15), fibre_angle=rng.uniform(0, np.pi), fibre_phase=rng.uniform(0, 2 * np.pi),
            u_merge=rng.random(), golgi_angle=rng.uniform(0, 2 * np.pi), nucleoli=rng.uniform(-0.5, 0.5, (3, 2))))
    textures = {name: smooth_noise(rng, (size, size), s) for name, s in
                (("nuc", 0.8), ("er", 1.0), ("rna", 1.5), ("bg", 8.0), ("fibre", 0.7))}
    return {"cells": cells, "textures": textures, "size": size, "noise_seed": int(rng.integers(2 ** 31))}


def render_field(layout: dict, effects: dict) -> np.ndarray:
    """Render a field under ``effects``: uint8 (5, H, W) in stain order w1..w5.

    Per-cell geometry is evaluated only in each cell's bounding window (speed); pixels belong
    to the nearest cell in normalised elliptic distance (the first such cell on ties). Cells are
    folded in one at a time, keeping only the nearest cell's values per pixel, so memory is a few
    (H, W) planes at any field size and cell count (1024-px sites hold ~1,000 cells).
    """
    size, cells, tex = layout["size"], layout["cells"], layout["textures"]
    s_shape, s_nuc, s_actin, s_rna, s_sync = (effects[c] for c in COMPONENTS)
    n = len(cells)
    own_cyto = np.full((size, size), np.inf, np.float32)  # the owner's normalised distance
    owner = np.zeros((size, size), np.int64)
    nuc_any = np.full((size, size), np.inf, np.float32)
    own_fibres = np.zeros((size, size), np.float32)
    own_nucleoli = np.zeros((size, size), np.float32)
    own_golgi = np.zeros((size, size), np.float32)
    for i, c in enumerate(cells):
        elong = c["elongation"] + (1 - c["elongation"]) * 0.85 * s_shape  # rounding
        radius = c["radius"] * (1 - 0.18 * s_shape)
        reach = radius * np.sqrt(elong) + 2
        y0, y1 = max(0, int(c["y"] - reach)), min(size, int(c["y"] + reach) + 1)
        x0, x1 = max(0, int(c["x"] - reach)), min(size, int(c["x"] + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        ca, sa = np.cos(c["angle"]), np.sin(c["angle"])
        dy, dx = yy - c["y"], xx - c["x"]
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        window = (slice(y0, y1), slice(x0, x1))
        cyto = np.sqrt((u / (radius * np.sqrt(elong))) ** 2 + (v / (radius / np.sqrt(elong))) ** 2)
        nearer = cyto < own_cyto[window]
        if not nearer.any():
            continue
        nuc_r = radius * c["nucleus"] * (1 - 0.3 * s_nuc + effects["nucleus_gain"])
        cu, cv = c["nuc_offset"][0] * radius, c["nuc_offset"][1] * radius
        nuc = np.sqrt((u - cu) ** 2 + (v - cv) ** 2) / nuc_r
        proj = xx * np.cos(c["fibre_angle"]) + yy * np.sin(c["fibre_angle"])
        fibre = (0.5 + 0.5 * np.cos(proj * 1.3 + c["fibre_phase"])) ** 6
        nucleolus = np.zeros_like(u)
        for oy, ox in c["nucleoli"]:
            d2 = (u - cu - ox * nuc_r) ** 2 + (v - cv - oy * nuc_r) ** 2
            nucleolus = np.maximum(nucleolus, np.exp(-d2 / (0.18 * nuc_r) ** 2 / 2))
        gu = cu + np.cos(c["golgi_angle"]) * nuc_r * 1.4
        gv = cv + np.sin(c["golgi_angle"]) * nuc_r * 1.4
        golgi = np.exp(-((u - gu) ** 2 + (v - gv) ** 2) / (0.3 * nuc_r) ** 2 / 2)
        for plane, value in ((own_cyto, cyto), (nuc_any, nuc), (own_fibres, fibre), (own_nucleoli, nucleolus),
                             (own_golgi, golgi)):
            plane[window][nearer] = value[nearer]
        owner[window][nearer] = i
    inside = own_cyto <= 1.0
    # syncytia: a cell fuses into its predecessor when its draw falls under the severity
    group = np.arange(n)
    for i, c in enumerate(cells):
        if c["u_merge"] < 0.35 * s_sync and i > 0:
            group[i] = group[i - 1]
    group_map = np.where(inside, group[owner], -1)
    membrane = (ndimage.grey_dilation(group_map, size=3) != ndimage.grey_erosion(group_map, size=3)) & inside
    in_nucleus = (nuc_any <= 1.0) & inside
    bright = np.array([c["bright"] for c in cells], np.float32)[owner]
    stains = np.zeros((5, size, size), np.float32)
    # w1 Hoechst: nuclei, condensed ones brighter and less textured
    nuc_profile = np.clip(1 - nuc_any ** 2, 0, 1) ** 0.4
    stains[0] = np.where(in_nucleus, nuc_profile * bright * (0.55 + 0.45 * s_nuc) * (1 + 0.25 * (1 - s_nuc) * tex["nuc"]), 0)
    # w2 ConA: ER around the nucleus, reticular
    er = np.exp(-2.2 * own_cyto) * (0.6 + 0.4 * np.clip(tex["er"], -1, 2)) * (1 + effects["er_gain"])
    stains[1] = np.where(inside & ~in_nucleus, 0.7 * er, 0.08 * inside)
    # w3 Phalloidin: cortex + stress fibres (broken up by texture) that infection dissolves
    fibre = own_fibres * np.clip(0.6 + 0.5 * tex["fibre"], 0, 1)
    stains[2] = np.where(inside, 0.15 + 0.45 * (1 - 0.9 * s_actin) * fibre * (own_cyto < 0.9), 0)
    stains[2] = np.maximum(stains[2], 0.8 * membrane * (1 + 0.3 * s_actin))
    # w4 Syto14: nucleoli + cytoplasmic RNA (viral RNA raises it)
    stains[3] = np.where(inside & ~in_nucleus, (0.12 + 0.45 * s_rna) * (1 + 0.3 * tex["rna"]), 0) + 0.9 * own_nucleoli * in_nucleus
    # w5 WGA: membranes + a Golgi spot beside the nucleus
    stains[4] = np.maximum(0.75 * membrane, 0.7 * own_golgi * inside * (1 - 0.5 * s_shape)) + 0.05 * inside
    # optics and camera: blur, background, shot noise
    rng = np.random.default_rng(layout["noise_seed"])
    stains = ndimage.gaussian_filter(stains, (0, 0.8, 0.8))
    stains += 0.03 + 0.01 * tex["bg"][None]
    stains = rng.poisson(np.clip(stains, 0, None) * 180) / 180.0
    return np.clip(stains * 230, 0, 255).astype(np.uint8)


def _plan(cell_types, wells_per_condition, concentrations_um):
    """(cell_type, disease, treatment canonical or None, concentration) per well group."""
    plan = []
    for cell_type in cell_types:
        n = wells_per_condition if cell_type == cell_types[0] else max(1, wells_per_condition // 2)
        plan += [(cell_type, "Active SARS-CoV-2", None, 0.0)] * (n * len(concentrations_um))
        for drug in ("Aloxistatin", "Pacritinib", "Remdesivir"):
            for conc in concentrations_um:
                plan += [(cell_type, "Active SARS-CoV-2", drug, conc)] * n
        plan += [(cell_type, "Active SARS-CoV-2", "Decoy", concentrations_um[-1])] * n
        plan += [(cell_type, "Mock", None, 0.0)] * (2 * n)
        plan += [(cell_type, "UV Inactivated SARS-CoV-2", None, 0.0)] * (2 * n)
    return plan


def paper_size(paper: dict) -> dict:
    """Generator options for a paper-size set, from study 1's resolved ``paper`` profile.

    Sites of :data:`SITE_SIZE_PX` (rounded up to whole crops of ``data.crop_size``), so the
    paper's crops tile them as they tile real sites, of the profile's cell type, one site per
    well, and 2 wells per condition at one concentration: with the loader's split, which gives
    each condition wells in as many splits as it has wells, every domain has a training well and a
    held-out one (18 sites in all).
    """
    data = paper["data"]
    crop = int(data.get("crop_size") or data["image_size"])
    field = max(crop, -(-SITE_SIZE_PX // crop) * crop)
    cell_type = data.get("cell_type") or "HRCE"
    return {"cell_types": [cell_type], "field_size": field, "wells_per_condition": 2, "sites_per_well": 1,
            "concentrations_um": [DEFAULTS["truth_concentration_um"]],
            "truth_concentration_um": DEFAULTS["truth_concentration_um"]}


def _write_site(folder: Path, layout_seed: int, field_size: int, truth_effects: list[dict], own: int | None,
                effects: dict, plate_folder: str, well: str, site: int, site_id: str) -> None:
    """Render one site under its own condition and every truth condition and write its files."""
    layout = field_layout(np.random.default_rng(layout_seed), field_size)
    truth = np.stack([render_field(layout, e) for e in truth_effects])
    image = truth[own] if own is not None else render_field(layout, effects)
    for channel in range(5):
        write_png(folder / "images" / plate_folder / f"{well}_s{site}_w{channel + 1}.png", image[channel])
    buffer = io.BytesIO()
    # uncompressed: the renders carry shot noise, so zlib saves a quarter at ten times the time
    np.savez(buffer, images=truth, conditions=np.array(TRUTH_CONDITIONS))
    atomic.write_bytes(folder / "truth" / "fields" / f"{site_id}.npz", buffer.getvalue())


def generate(folder: Path, *, cell_types, wells_per_condition: int, sites_per_well: int, field_size: int,
             concentrations_um, truth_concentration_um: float, seed: int) -> None:
    """Write the phantom (root for :class:`RxRx19a`).

    Every site's layout seed is drawn up front in plan order, so the files do not depend on how
    sites are spread over processes: paper-size sites (seconds each) render on every core.
    """
    folder = Path(folder)
    cell_types = list(cell_types)
    master = np.random.default_rng(seed)
    rows, jobs = [], []
    truth_effects = {}
    well_counter: dict[str, int] = {}
    for cell_type, disease, drug, conc in _plan(cell_types, wells_per_condition, list(concentrations_um)):
        experiment = f"{cell_type}-1"
        k = well_counter.get(experiment, 0)
        well_counter[experiment] = k + 1
        plate, index = divmod(k, 16 * 22)
        well = f"{'ABCDEFGHIJKLMNOP'[index % 16]}{index // 16 + 2:02d}"
        plate += 1
        effects = condition_effects(disease, drug, conc, cell_type)
        if cell_type not in truth_effects:
            truth_effects[cell_type] = [
                condition_effects(*parse, truth_concentration_um if parse[1] else 0.0, cell_type)
                for parse in (("Mock", None), ("UV Inactivated SARS-CoV-2", None), ("Active SARS-CoV-2", None),
                              ("Active SARS-CoV-2", "Aloxistatin"), ("Active SARS-CoV-2", "Pacritinib"),
                              ("Active SARS-CoV-2", "Remdesivir"))]
        # the well's own render is one of the truth renders when its condition is among them
        condition = disease if drug is None else f"{disease} + {drug}"
        own = (TRUTH_CONDITIONS.index(condition) if condition in TRUTH_CONDITIONS
               and (drug is None or conc == truth_concentration_um) else None)
        for site in range(1, sites_per_well + 1):
            site_id = f"{experiment}_{plate}_{well}_{site}"
            jobs.append((folder, int(master.integers(2 ** 63)), field_size, truth_effects[cell_type], own, effects,
                         f"{experiment}/Plate{plate}", well, site, site_id))
            rows.append({"site_id": site_id, "well_id": f"{experiment}_{plate}_{well}", "cell_type": cell_type,
                         "experiment": experiment, "plate": plate, "well": well, "site": site,
                         "disease_condition": disease, "treatment": TREATMENT_SPELLING[drug] if drug else "",
                         "treatment_conc": conc if drug else "", "SMILES": SMILES[drug] if drug else ""})
    workers = min(len(jobs), os.cpu_count() or 1) if field_size >= PARALLEL_FIELD_PX else 1
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver")) as pool:  # no fork of a threaded process
            for done in [pool.submit(_write_site, *job) for job in jobs]:
                done.result()
    else:
        for job in jobs:
            _write_site(*job)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METADATA_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(folder / "metadata.csv", text.getvalue())
