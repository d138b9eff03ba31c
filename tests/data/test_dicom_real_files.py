"""Real DICOM files (pydicom's test files and the ``pydicom-data`` package) through medgan's readers,
compared with pydicom's own ``apply_modality_lut`` / ``apply_voi_lut`` and with hand formulas.

Files needing an optional decoder (pylibjpeg-libjpeg for JPEG Lossless, JPEG-LS, 12-bit JPEG) are
checked for a decode equal to their twin when ``pip install medgan[dicom]`` is done, and for an
error naming the package when it is not.
"""

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.dataset import Dataset
from pydicom.uid import JPEGLSLossless, JPEGLossless, generate_uid

from medgan.data.base import BadInputLog, DataError
from medgan.data.chest_xray import read_radiograph
from medgan.data.dicom import (MissingDecoderError, TruncatedFileError, find_series, load_series, pixel_values,
                               read_dicom, to_hu, voi_values)

pytest.importorskip("data_store", reason="pydicom-data (test extra) provides the larger real files")
from pydicom.data import get_testdata_file  # noqa: E402

warnings.filterwarnings("ignore", module="pydicom")


def real(name: str):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not in pydicom's test data (pydicom-data installed?)")
    return path


def libjpeg_available() -> bool:
    return get_decoder(JPEGLSLossless).is_available and "pylibjpeg" in get_decoder(JPEGLossless).available_plugins


needs_libjpeg = pytest.mark.skipif(not libjpeg_available(),
                                   reason="pylibjpeg-libjpeg not installed (pip install medgan[dicom])")

# (uncompressed reference, twin in another transfer syntax): JPEG 2000, RLE, big endian, implicit VR
TWINS = [("MR_small.dcm", "MR_small_jp2klossless.dcm"), ("MR_small.dcm", "MR_small_RLE.dcm"),
         ("MR_small.dcm", "MR_small_bigendian.dcm"), ("MR_small.dcm", "MR_small_implicit.dcm"),
         ("emri_small.dcm", "emri_small_RLE.dcm"), ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
         ("emri_small.dcm", "emri_small_big_endian.dcm"), ("RG1_UNCR.dcm", "RG1_J2KR.dcm"),
         ("RG3_UNCR.dcm", "RG3_J2KR.dcm"), ("693_UNCR.dcm", "693_J2KR.dcm"), ("MR2_UNCR.dcm", "MR2_J2KR.dcm")]
LIBJPEG_TWINS = [("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
                 ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm")]
LIBJPEG_ONLY = ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm",
                "MR_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"]
LUT_FILES = ["CT_small.dcm", "MR_small.dcm", "mlut_18.dcm", "vlut_04.dcm", "RG1_UNCR.dcm", "RG3_UNCR.dcm",
             "693_UNCR.dcm", "MR2_UNCR.dcm", "JPEG2000_UNC.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"]


def _pydicom_lut(path):
    ds = pydicom.dcmread(path)
    return ds, apply_modality_lut(ds.pixel_array, ds)


@pytest.mark.parametrize("name", LUT_FILES)
def test_modality_lut_matches_pydicom(name):
    path = real(name)
    ds, reference = _pydicom_lut(path)
    values = pixel_values(read_dicom(path), path)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, reference.astype(np.float32))


def test_modality_lut_sequence_uses_stored_integers():
    path = real("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    assert "ModalityLUTSequence" in ds and ds.pixel_array.min() < 0  # signed stored values, first map -2048
    item = ds.ModalityLUTSequence[0]
    n, first, _ = item.LUTDescriptor
    lut = np.asarray(item.LUTData)
    hand = lut[np.clip(ds.pixel_array.astype(np.int64) - first, 0, n - 1)]
    np.testing.assert_array_equal(pixel_values(ds, path), hand.astype(np.float32))


@pytest.mark.parametrize("name", ["vlut_04.dcm", "MR_small.dcm", "RG1_UNCR.dcm", "693_UNCR.dcm", "MR2_UNCR.dcm"])
def test_voi_lut_matches_pydicom(name):
    path = real(name)
    ds, modality = _pydicom_lut(path)
    reference = apply_voi_lut(modality, ds)
    np.testing.assert_array_equal(voi_values(read_dicom(path), path), reference.astype(np.float32))


def test_voi_lut_sequence_hand_formula():
    path = real("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    n, first, _ = item.LUTDescriptor
    lut = np.asarray(item.LUTData)
    modality = apply_modality_lut(ds.pixel_array, ds)
    hand = lut[np.clip(modality.astype(np.int64) - first, 0, n - 1)]
    np.testing.assert_array_equal(voi_values(ds, path), hand.astype(np.float32))


def test_window_hand_formula():
    """Linear VOI (PS3.3 C.11.2.1.2.1) on MR_small's first window, as pydicom applies it."""
    path = real("MR_small.dcm")
    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    x = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    y_min, y_max = 0.0, 2.0 ** ds.BitsStored - 1
    if ds.PixelRepresentation == 1 and "RescaleSlope" not in ds:  # signed output range
        y_min, y_max = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    hand = np.where(x <= center - 0.5 - (width - 1) / 2, y_min,
                    np.where(x > center - 0.5 + (width - 1) / 2, y_max,
                             ((x - (center - 0.5)) / (width - 1) + 0.5) * (y_max - y_min) + y_min))
    np.testing.assert_allclose(voi_values(ds, path), hand, atol=1e-3)


@pytest.mark.parametrize("reference,twin", TWINS)
def test_compressed_twins_decode_identically(reference, twin):
    ref_path, twin_path = real(reference), real(twin)
    np.testing.assert_array_equal(pixel_values(read_dicom(twin_path), twin_path),
                                  pixel_values(read_dicom(ref_path), ref_path))


@needs_libjpeg
@pytest.mark.parametrize("reference,twin", LIBJPEG_TWINS)
def test_jpeg_ls_twins_decode_identically(reference, twin):
    ref_path, twin_path = real(reference), real(twin)
    np.testing.assert_array_equal(pixel_values(read_dicom(twin_path), twin_path),
                                  pixel_values(read_dicom(ref_path), ref_path))


@needs_libjpeg
@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPGExtended.dcm"])
def test_jpeg_lossless_and_12bit_decode_like_pydicom(name):
    path = real(name)
    ds, reference = _pydicom_lut(path)
    np.testing.assert_array_equal(pixel_values(read_dicom(path), path), reference.astype(np.float32))


@pytest.mark.skipif(libjpeg_available(), reason="pylibjpeg-libjpeg is installed: these files decode")
@pytest.mark.parametrize("name", LIBJPEG_ONLY)
def test_undecodable_syntax_names_the_package(name):
    path = real(name)
    with pytest.raises(MissingDecoderError, match=r"pylibjpeg-libjpeg.*pip install medgan\[dicom\]") as info:
        pixel_values(read_dicom(path), path)
    assert name in str(info.value) and "TransferSyntaxUID" in str(info.value)


def test_missing_decoder_message_without_the_package(monkeypatch):
    """Whatever is installed: a decoder reported unavailable gives the package and the extra."""
    import medgan.data.dicom as dicom_module

    class Unavailable:
        is_available = False
        available_plugins = ()

    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: Unavailable())
    path = real("JPEG-LL.dcm")
    with pytest.raises(MissingDecoderError,
                       match=r"JPEG-LL\.dcm: TransferSyntaxUID JPEG Lossless.*needs pylibjpeg-libjpeg.*medgan\[dicom\]"):
        pixel_values(read_dicom(path), path)
    path = real("MR_small_jp2klossless.dcm")
    with pytest.raises(MissingDecoderError, match="pylibjpeg-openjpeg"):
        pixel_values(read_dicom(path), path)


def _copy_as_series(source, folder, names, *, spacing_mm=2.5, modality=None, extra=None):
    """Real pixels of ``source`` written as a series of ``len(names)`` slices under the given file names."""
    template = pydicom.dcmread(source)
    series_uid = generate_uid(entropy_srcs=[str(folder)])
    paths = []
    for k, name in enumerate(names):
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(folder), name])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing_mm]
        ds.PatientID = "LUNG1-001"
        if modality:
            ds.Modality = modality
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_ct_series_of_real_slices_named_any_way(tmp_path):
    """A real CT slice as a 4-slice series named .dicom, .IMA, no suffix, and a numeric suffix."""
    source = real("CT_small.dcm")
    _copy_as_series(source, tmp_path / "LUNG1-001" / "CT", ["a.dicom", "b.IMA", "IM0003", "1.2.840.4"])
    (tmp_path / "LUNG1-001" / "CT" / "README").write_text("exported by PACS")
    found = find_series(tmp_path, modality="CT")
    assert len(found) == 1 and len(found[0].files) == 4
    volume = load_series(found[0].files)
    ds, reference = _pydicom_lut(source)
    assert volume.array.shape == (4,) + ds.pixel_array.shape
    for k in range(4):
        np.testing.assert_array_equal(volume.array[k], reference.astype(np.float32))
    hand_hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(to_hu(ds, source), hand_hu.astype(np.float32))
    assert volume.spacing_mm == pytest.approx((2.5, *map(float, ds.PixelSpacing)))


def test_real_series_beside_dicomdir_and_non_image_dicom(tmp_path):
    """A DICOMDIR and a DICOM without pixel data (no preamble) beside a series are skipped and counted."""
    _copy_as_series(real("CT_small.dcm"), tmp_path / "series", ["1.dcm", "2.dcm"])
    shutil.copy(real("DICOMDIR"), tmp_path / "DICOMDIR")
    shutil.copy(real("no_meta.dcm"), tmp_path / "series" / "plan_no_preamble")
    ignored = []
    found = find_series(tmp_path, modality="CT", ignored=ignored)
    assert len(found) == 1 and len(found[0].files) == 2
    reasons = {p.name: r for p, r in ignored}
    assert "DICOMDIR" in reasons and "DICOMDIR" in reasons["DICOMDIR"]
    assert "plan_no_preamble" in reasons


def test_real_slice_without_preamble_is_read(tmp_path):
    source = real("CT_small.dcm")
    ds = pydicom.dcmread(source)
    path = tmp_path / "s" / "IM0001"
    path.parent.mkdir()
    ds.preamble = None
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    with open(path, "rb") as f:
        assert f.read(132)[128:132] != b"DICM"
    found = find_series(tmp_path, modality="CT")
    assert len(found) == 1
    np.testing.assert_array_equal(load_series(found[0].files).array[0], _pydicom_lut(source)[1].astype(np.float32))


def test_pet_tags_on_real_pixels_give_hand_suv(tmp_path):
    source = real("CT_small.dcm")  # real 16-bit stored pixels with a real rescale, relabelled PT
    info = Dataset()
    info.RadionuclideTotalDose = "370000000"
    info.RadionuclideHalfLife = "6586.2"
    info.RadiopharmaceuticalStartDateTime = "20200101093000"
    extra = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": "80", "SeriesDate": "20200101",
             "SeriesTime": "103000", "RadiopharmaceuticalInformationSequence": Sequence([info])}
    paths = _copy_as_series(source, tmp_path / "pet", ["p1.dcm", "p2.dcm", "p3.dcm"], spacing_mm=3.0,
                            modality="PT", extra=extra)
    volume = load_series(paths)
    ds, bq_ml = _pydicom_lut(source)
    factor = 80 * 1000 / (370e6 * 2 ** (-3600 / 6586.2))
    for k in range(3):
        np.testing.assert_allclose(volume.array[k], (bq_ml * factor).astype(np.float32), rtol=1e-6)
    assert volume.modality == "PT" and volume.spacing_mm[0] == pytest.approx(3.0)


def test_enhanced_multiframe_ct_is_expanded():
    path = real("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    volume = load_series([path])
    assert volume.array.shape == (2, 512, 512)
    # orientation [-1,0,0, 0,1,0]: normal (0,0,-1), so z=-149 (frame 2) sorts before z=-159 (frame 1)
    np.testing.assert_allclose(volume.positions_mm, [149.0, 159.0])
    transform = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    hand = ds.pixel_array.astype(np.float64) * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
    np.testing.assert_array_equal(volume.array, hand[::-1].astype(np.float32))
    assert volume.spacing_mm == pytest.approx((10.0, 0.388672, 0.388672))


def test_monochrome1_radiograph_chain():
    """MONOCHROME1 CR: modality LUT, inverted around the LUT range, then min..99th percentile to 8 bit."""
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        path = real(name)
        ds, lut = _pydicom_lut(path)
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        inverted = (2 ** ds.BitsStored - 1) * slope + intercept + intercept - lut.astype(np.float32)
        low, high = np.percentile(inverted, [0, 99])
        hand = np.round(np.clip((inverted - low) / (high - low), 0, 1) * 255)
        got = read_radiograph(Path(path), low_percentile=0, high_percentile=99, normalise_png=False)
        np.testing.assert_array_equal(got, hand.astype(np.float32))


def test_real_truncated_files_say_truncated(tmp_path):
    for name in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        path = real(name)
        with pytest.raises(TruncatedFileError, match=rf"{name}: .*truncated"):
            pixel_values(read_dicom(path), path)
    data = open(real("CT_small.dcm"), "rb").read()
    for n_bytes in (140, 300, 600):  # header cut inside the file meta / before Modality
        cut = tmp_path / f"cut{n_bytes}.dcm"
        cut.write_bytes(data[:n_bytes])
        with pytest.raises(TruncatedFileError, match=rf"cut{n_bytes}\.dcm: truncated DICOM header"):
            find_series(tmp_path, modality="CT")
        log = BadInputLog(skip_bad=True)
        assert find_series(tmp_path, modality="CT", log=log) == [] and log.count == 1
        cut.unlink()


def test_every_real_image_either_reads_or_names_the_file():
    """Every real test file with pixel data: values like pydicom's, or a DataError naming the file."""
    n_read = 0
    import data_store
    folders = [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent / "data"]
    paths = sorted({str(p) for folder in folders for p in folder.rglob("*.dcm")})  # local: no download
    assert len(paths) > 100
    for path in paths:
        if os.path.getsize(path) > 600_000:  # the large ones (RG1, RG3, MR2, 693) have their own tests above
            continue
        try:
            ds = pydicom.dcmread(path)
            reference = apply_modality_lut(ds.pixel_array, ds)
        except Exception:  # noqa: BLE001 - pydicom itself cannot decode it: we must say so
            reference = None
        try:
            values = pixel_values(read_dicom(path), path)
        except DataError as exc:
            assert path.split("/")[-1] in str(exc)
            continue
        if reference is not None and "PerFrameFunctionalGroupsSequence" not in ds:
            np.testing.assert_array_equal(values, np.asarray(reference, np.float32), err_msg=path)
            n_read += 1
    assert n_read >= 40
