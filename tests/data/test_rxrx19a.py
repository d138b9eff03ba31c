"""RxRx19a: metadata.csv read as text, repeated rows, blank IDs, bad CSV files, palette stains."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medgan.data.base import DataError
from medgan.data.png_folders import write_png
from medgan.data.rxrx19a import RxRx19a, read_metadata

KW = dict(crop_size=32, image_size=32)


def _rows(root):
    return (root / "metadata.csv").read_text().splitlines()


def _write(root, lines):
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def test_identical_repeated_rows_collapse_and_are_counted(phantom_copy):
    root = phantom_copy("cells")
    full = RxRx19a(root, **KW)
    lines = _rows(root)
    _write(root, [*lines, lines[1], lines[2], lines[1]])
    dataset = RxRx19a(root, **KW)
    assert dataset.duplicates_collapsed == 3 and dataset.bad_input.count == 0
    assert len(dataset) == len(full)  # no duplicated crops
    assert dataset.fingerprint() == full.fingerprint()


def test_conflicting_repeated_site_is_an_error_or_a_counted_skip(phantom_copy):
    root = phantom_copy("cells")
    full = RxRx19a(root, **KW)
    lines = _rows(root)
    victim = lines[2].split(",")  # the Aloxistatin site, at another concentration
    victim[9] = "3.0"
    _write(root, [*lines, ",".join(victim)])
    with pytest.raises(DataError, match=rf"metadata.csv: treatment_conc: site_id '{victim[0]}' listed in rows \[3, 11\]"):
        RxRx19a(root, **KW)
    skipped = RxRx19a(root, skip_bad=True, max_sites_per_domain=None, domains=(("Active", "Active SARS-CoV-2", None),), **KW)
    assert skipped.bad_input.count == 1 and "site_id" in skipped.bad_input.skipped[0][1]
    assert len(skipped) == len([r for r in full.records if r["label"] == 0])


def test_two_site_ids_for_the_same_images_is_an_error(phantom_copy):
    root = phantom_copy("cells")
    lines = _rows(root)
    twin = lines[1].split(",")
    twin[0] = twin[0] + "-copy"
    _write(root, [*lines, ",".join(twin)])
    with pytest.raises(DataError, match=r"metadata.csv: site_id: image location .* listed in rows \[2, 11\]"):
        RxRx19a(root, **KW)


@pytest.mark.parametrize("column", ["well_id", "site_id", "well", "site"])
def test_blank_ids_never_merge(phantom_copy, column):
    root = phantom_copy("cells")
    full = RxRx19a(root, **KW)
    lines = _rows(root)
    header = lines[0].split(",")
    row = lines[6].split(",")  # a Mock site: outside the study's domains, so skipping it keeps them
    row[header.index(column)] = " "
    _write(root, [*lines[:6], ",".join(row), *lines[7:]])
    with pytest.raises(DataError, match=rf"metadata.csv: {column}: blank in row 7"):
        RxRx19a(root, **KW)
    dataset = RxRx19a(root, skip_bad=True, **KW)
    assert dataset.bad_input.count == 1 and len(dataset) == len(full)


def test_non_integer_site_names_the_column(phantom_copy):
    root = phantom_copy("cells")
    lines = _rows(root)
    row = lines[3].split(",")
    row[6] = "1a"
    _write(root, [lines[0], *lines[1:3], ",".join(row), *lines[4:]])
    with pytest.raises(DataError, match=r"metadata.csv: site: not an integer in row 4"):
        RxRx19a(root, **KW)


def test_ids_are_read_as_text(tmp_path, phantom_copy):
    root = phantom_copy("cells")
    table = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    table["well_id"] = ["007", "7", *table["well_id"][2:]]
    table["experiment"] = ["0012"] * len(table)
    table.to_csv(root / "metadata.csv", index=False)
    back = read_metadata(root / "metadata.csv")
    assert back["well_id"][:2].tolist() == ["007", "7"] and set(back["experiment"]) == {"0012"}
    assert back["treatment_conc_um"].dtype == float


def test_empty_and_latin1_metadata(phantom_copy):
    root = phantom_copy("cells")
    text = (root / "metadata.csv").read_text()
    (root / "metadata.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"metadata.csv: metadata.csv is empty \(0 bytes\)"):
        RxRx19a(root, **KW)
    (root / "metadata.csv").write_text("\n\n")
    with pytest.raises(DataError, match=r"metadata.csv: metadata.csv has no header row"):
        RxRx19a(root, **KW)
    (root / "metadata.csv").write_bytes(text.replace("pacritinib", "pacritinib é").encode("latin-1"))
    table = read_metadata(root / "metadata.csv")
    assert "pacritinib é" in set(table["treatment"])


def _site_png(root, suffix):
    return sorted((root / "images").rglob(f"*{suffix}"))[0]


def test_gray_palette_stain_is_decoded_through_its_palette(phantom_copy):
    root = phantom_copy("cells")
    full = RxRx19a(root, **KW)
    victim = _site_png(root, "_w4.png")
    levels = np.array(Image.open(victim))
    image = Image.fromarray((255 - levels).astype(np.uint8)).convert("P")  # indices = 255 - level
    image.putpalette(np.repeat(np.arange(256)[::-1], 3).astype(np.uint8).tolist())
    image.save(victim)
    assert Image.open(victim).mode == "P"
    assert RxRx19a(root, **KW).fingerprint() == full.fingerprint()


def test_colour_palette_and_16_bit_stains_are_refused(phantom_copy):
    root = phantom_copy("cells")
    victim = _site_png(root, "_w2.png")
    levels = np.array(Image.open(victim))
    image = Image.fromarray(levels).convert("P")
    image.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tolist())
    image.save(victim)
    with pytest.raises(DataError, match=rf"{victim.name}: wrong channel count: expected 1 .*, got 3"):
        RxRx19a(root, **KW)
    write_png(victim, levels.astype(np.uint16) * 257)
    with pytest.raises(DataError, match=rf"{victim.name}: expected 8-bit, got uint16"):
        RxRx19a(root, **KW)
    alpha = np.full(levels.shape, 255, np.uint8)
    alpha[0, 0] = 0
    Image.fromarray(np.stack([levels, alpha], -1), "LA").save(victim)
    with pytest.raises(DataError, match=rf"{victim.name}: image mode 'LA' has 1 transparent pixel"):
        RxRx19a(root, **KW)
    assert RxRx19a(root, skip_bad=True, **KW).bad_input.count == 1
