"""RxRx19a: metadata.csv read as text, repeated rows, blank IDs, bad CSV files, palette stains; the item
store the crops are decoded into, the split by condition, the paper-size phantom's geometry."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medgan.config import resolve_profile
from medgan.data import rxrx19a
from medgan.data.base import DataError
from medgan.data.phantoms import cells
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
    assert len(skipped) == len([r for r in full.rows if r["label"] == 0])


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


# ---------------------------------------------------------------- item store, splits, paper size
def test_crops_are_decoded_once_into_the_store_and_read_per_item(phantom_copy, monkeypatch):
    root = phantom_copy("cells")
    calls = []
    decode = rxrx19a.decode_site

    def counting(entry, **settings):
        calls.append(entry)
        return decode(entry, **settings)
    counting.version = decode.version
    monkeypatch.setattr(rxrx19a, "decode_site", counting)
    dataset = RxRx19a(root, **KW)
    sites = len(calls)
    assert dataset.store is not None and sites > 0 and len(dataset) == 4 * sites  # 64-px sites, 2 x 2 tiles
    assert all("image" not in row and set(row) == {"label", "subject", "meta"} for row in dataset.rows)
    again = RxRx19a(root, **KW)
    assert len(calls) == sites and again.store.folder == dataset.store.folder  # read back, nothing decoded
    assert again.fingerprint() == dataset.fingerprint()
    item = again[5]
    assert item["image"].shape == (5, 32, 32) and item["label"] == again.rows[5]["label"]
    assert item["meta"] == again.rows[5]["meta"]
    RxRx19a(root, crop_size=32, image_size=16)  # another setting is another store
    assert len(calls) == 2 * sites


def test_parallel_decoding_writes_the_same_items(phantom_copy, tmp_path, monkeypatch):
    root = phantom_copy("cells")
    serial = RxRx19a(root, with_truth=True, **KW)
    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "other-work"))
    parallel = RxRx19a(root, with_truth=True, num_workers=2, **KW)
    assert parallel.store.folder != serial.store.folder and parallel.rows == serial.rows
    assert parallel.fingerprint() == serial.fingerprint()


def test_a_site_with_a_missing_stain_is_skipped_before_decoding(phantom_copy):
    root = phantom_copy("cells")
    full = RxRx19a(root, **KW)
    first = read_metadata(root / "metadata.csv").iloc[0]  # an Active site: one of the study's
    victim = root / "images" / first["experiment"] / f"Plate{first['plate']}" / f"{first['well']}_s{first['site']}_w3.png"
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: file named in metadata.csv is missing \(channel w3\)"):
        RxRx19a(root, **KW)
    skipped = RxRx19a(root, skip_bad=True, **KW)
    assert skipped.bad_input.count == 1 and len(skipped) == len(full) - 4  # its 4 tiles


def test_every_condition_reaches_as_many_splits_as_it_has_wells():
    order = ["train", "val", "test"]
    mapping = {"a1": "train", "a2": "train", "a3": "train", "b1": "test", "b2": "test", "c1": "val", "c2": "train",
               "c3": "test", "d1": "train"}
    groups = [["a1", "a2", "a3"], ["b1", "b2"], ["c1", "c2", "c3"], ["d1"]]
    covered = rxrx19a.cover_conditions(mapping, groups, order=order)
    assert {covered[w] for w in groups[0]} == {"train", "val", "test"}
    assert {covered[w] for w in groups[1]} == {"train", "val"}  # two wells: training and validation
    assert all(covered[w] == mapping[w] for w in groups[2] + groups[3])  # covered already: untouched
    assert rxrx19a.cover_conditions(covered, groups, order=order) == covered


def test_paper_size_counts_give_every_domain_training_and_held_out_wells(make_phantom):
    options = cells.paper_size(resolve_profile("01_rxrx19a_stargan_v2", "paper"))
    assert options["field_size"] == 1024 and options["sites_per_well"] == 1
    root = make_phantom("cells", **{**options, "field_size": 64})  # the paper-size plan at a small field
    train = RxRx19a(root, split="train", split_fractions=(0.8, 0.1, 0.1), **KW)
    held = RxRx19a(root, split=("val", "test"), split_fractions=(0.8, 0.1, 0.1), **KW)
    for dataset in (train, held):
        assert {row["label"] for row in dataset.rows} == set(range(len(dataset.domain_names)))
    assert not {r["subject"] for r in train.rows} & {r["subject"] for r in held.rows}


def test_paper_size_sites_tile_into_whole_crops():
    assert cells.paper_size({"data": {"crop_size": 256, "image_size": 256}})["field_size"] == 1024
    assert cells.paper_size({"data": {"crop_size": 300, "image_size": 128}})["field_size"] == 1200
    assert cells.paper_size({"data": {"crop_size": None, "image_size": 256, "cell_type": "VERO"}})["cell_types"] == ["VERO"]
