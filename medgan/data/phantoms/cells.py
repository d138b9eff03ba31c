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
"""

from __future__ import annotations

import csv
import io
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
    to the nearest cell in normalised elliptic distance.
    """
    size, cells, tex = layout["size"], layout["cells"], layout["textures"]
    s_shape, s_nuc, s_actin, s_rna, s_sync = (effects[c] for c in COMPONENTS)
    n = len(cells)
    cyto_d = np.full((n, size, size), np.inf, np.float32)
    nuc_d = np.full((n, size, size), np.inf, np.float32)
    fibres = np.zeros((n, size, size), np.float32)
    nucleoli = np.zeros((n, size, size), np.float32)
    golgi = np.zeros((n, size, size), np.float32)
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
        window = (i, slice(y0, y1), slice(x0, x1))
        cyto_d[window] = np.sqrt((u / (radius * np.sqrt(elong))) ** 2 + (v / (radius / np.sqrt(elong))) ** 2)
        nuc_r = radius * c["nucleus"] * (1 - 0.3 * s_nuc + effects["nucleus_gain"])
        cu, cv = c["nuc_offset"][0] * radius, c["nuc_offset"][1] * radius
        nuc_d[window] = np.sqrt((u - cu) ** 2 + (v - cv) ** 2) / nuc_r
        proj = xx * np.cos(c["fibre_angle"]) + yy * np.sin(c["fibre_angle"])
        fibres[window] = (0.5 + 0.5 * np.cos(proj * 1.3 + c["fibre_phase"])) ** 6
        for oy, ox in c["nucleoli"]:
            d2 = (u - cu - ox * nuc_r) ** 2 + (v - cv - oy * nuc_r) ** 2
            nucleoli[window] = np.maximum(nucleoli[window], np.exp(-d2 / (0.18 * nuc_r) ** 2 / 2))
        gu = cu + np.cos(c["golgi_angle"]) * nuc_r * 1.4
        gv = cv + np.sin(c["golgi_angle"]) * nuc_r * 1.4
        golgi[window] = np.exp(-((u - gu) ** 2 + (v - gv) ** 2) / (0.3 * nuc_r) ** 2 / 2)
    owner = np.argmin(cyto_d, axis=0)
    pick = lambda stack: np.take_along_axis(stack, owner[None], 0)[0]  # noqa: E731
    own_cyto = pick(cyto_d)
    inside = own_cyto <= 1.0
    # syncytia: a cell fuses into its predecessor when its draw falls under the severity
    group = np.arange(n)
    for i, c in enumerate(cells):
        if c["u_merge"] < 0.35 * s_sync and i > 0:
            group[i] = group[i - 1]
    group_map = np.where(inside, group[owner], -1)
    membrane = (ndimage.grey_dilation(group_map, size=3) != ndimage.grey_erosion(group_map, size=3)) & inside
    nuc_any = pick(nuc_d)
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
    fibre = pick(fibres) * np.clip(0.6 + 0.5 * tex["fibre"], 0, 1)
    stains[2] = np.where(inside, 0.15 + 0.45 * (1 - 0.9 * s_actin) * fibre * (own_cyto < 0.9), 0)
    stains[2] = np.maximum(stains[2], 0.8 * membrane * (1 + 0.3 * s_actin))
    # w4 Syto14: nucleoli + cytoplasmic RNA (viral RNA raises it)
    stains[3] = np.where(inside & ~in_nucleus, (0.12 + 0.45 * s_rna) * (1 + 0.3 * tex["rna"]), 0) + 0.9 * pick(nucleoli) * in_nucleus
    # w5 WGA: membranes + a Golgi spot beside the nucleus
    stains[4] = np.maximum(0.75 * membrane, 0.7 * pick(golgi) * inside * (1 - 0.5 * s_shape)) + 0.05 * inside
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


def generate(folder: Path, *, cell_types, wells_per_condition: int, sites_per_well: int, field_size: int,
             concentrations_um, truth_concentration_um: float, seed: int) -> None:
    """Write the phantom (root for :class:`RxRx19a`)."""
    folder = Path(folder)
    cell_types = list(cell_types)
    master = np.random.default_rng(seed)
    rows = []
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
            layout = field_layout(np.random.default_rng(master.integers(2 ** 63)), field_size)
            truth = np.stack([render_field(layout, e) for e in truth_effects[cell_type]])
            image = truth[own] if own is not None else render_field(layout, effects)
            site_id = f"{experiment}_{plate}_{well}_{site}"
            for channel in range(5):
                write_png(folder / "images" / experiment / f"Plate{plate}" / f"{well}_s{site}_w{channel + 1}.png", image[channel])
            buffer = io.BytesIO()
            np.savez_compressed(buffer, images=truth, conditions=np.array(TRUTH_CONDITIONS))
            atomic.write_bytes(folder / "truth" / "fields" / f"{site_id}.npz", buffer.getvalue())
            rows.append({"site_id": site_id, "well_id": f"{experiment}_{plate}_{well}", "cell_type": cell_type,
                         "experiment": experiment, "plate": plate, "well": well, "site": site,
                         "disease_condition": disease, "treatment": TREATMENT_SPELLING[drug] if drug else "",
                         "treatment_conc": conc if drug else "", "SMILES": SMILES[drug] if drug else ""})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METADATA_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(folder / "metadata.csv", text.getvalue())
