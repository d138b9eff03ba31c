"""Bad DICOM inputs of the kinds hospitals produce (issue 15, items 3, 5, 10, 12, 13).

Each ends in the right data, a counted skip, or a DataError subclass naming the file and the field.
"""

import datetime as dt
import os
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from medgan.data.base import BadInputLog, DataError
from medgan.data.dicom import (ConflictingSliceError, MissingDecoderError, TruncatedFileError, UnsupportedDataError,
                               find_series, is_dicom_candidate, load_series, pixel_values, read_dicom, suv_factor,
                               suv_factor_from_values, walk_files, write_slice)


def _slice(path, value=0, *, z=0.0, series_uid="1.2.3", patient_id="P1", instance=1, spacing=(0.7, 0.7),
           modality="CT", extra=None, shape=(4, 4)):
    return write_slice(path, np.full(shape, 1024 + value, np.uint16), modality=modality, patient_id=patient_id,
                       series_uid=series_uid, study_uid="1.2", instance_number=instance, position_mm=(0, 0, z),
                       pixel_spacing_mm=spacing, rescale_slope=1.0, rescale_intercept=-1024.0, extra=extra)


def _series(folder, n=4, **kw):
    return [_slice(folder / f"im{k:03d}.dcm", 10 * k, z=2.5 * k, instance=k + 1, **kw) for k in range(n)]


# ---------------------------------------------------------------- 3 + 12: SUV date-times and tags
DOSE, HALF_LIFE, WEIGHT = 350e6, 6586.2, 72.5


def _raw(ds, keyword, text):
    """Store ``text`` as the undecoded value of ``keyword``, as a file read from disk would hold it."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    raw = text.encode() + (b" " if len(text) % 2 else b"")
    ds[tag] = RawDataElement(BaseTag(tag), pydicom.datadict.dictionary_VR(tag), len(raw), raw, 0, False, True)


def _pet(**overrides):
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = "72.5"
    ds.SeriesDate = "20200101"
    ds.SeriesTime = "103000"
    info = Dataset()
    info.RadionuclideTotalDose = "350000000"
    info.RadionuclideHalfLife = "6586.2"
    info.RadiopharmaceuticalStartTime = "093000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([info])
    for key, value in overrides.items():
        if key.startswith("info_"):
            key = key[5:]
            if value is None:
                delattr(info, key)
            else:
                _raw(info, key, value)
        elif value is None:
            delattr(ds, key)
        else:
            _raw(ds, key, value)  # undecoded, as read from a file: invalid values reach the reader
    return ds


def _hand(elapsed_s):
    return WEIGHT * 1000 / (DOSE * 2 ** (-elapsed_s / HALF_LIFE))


def test_injection_after_scan_with_both_dates_is_an_error_naming_both_tags():
    # the example of the issue: injection 10:45 the same day as a 10:30 scan
    ds = _pet(info_RadiopharmaceuticalStartDateTime="20200101104500")
    with pytest.raises(DataError, match=r"p\.dcm: RadiopharmaceuticalStartDateTime .* is after SeriesDate/SeriesTime"):
        suv_factor(ds, "p.dcm")
    # injection on the next day, by date, is equally impossible
    with pytest.raises(DataError, match="after SeriesDate/SeriesTime"):
        suv_factor(_pet(info_RadiopharmaceuticalStartDateTime="20200102080000"), "p.dcm")
    with pytest.raises(DataError, match="injection time"):
        suv_factor_from_values(dose_bq=DOSE, half_life_s=HALF_LIFE, weight_kg=WEIGHT,
                               injection_time=dt.datetime(2020, 1, 1, 11), scan_time=dt.datetime(2020, 1, 1, 10))


def test_full_date_times_are_used_when_both_dates_exist():
    # injection the day before at 09:30 -> 25 h, not 1 h
    ds = _pet(info_RadiopharmaceuticalStartDateTime="20191231093000")
    assert suv_factor(ds) == pytest.approx(_hand(25 * 3600), rel=1e-12)
    # scan just after midnight, injection (with date) the evening before: 10 min
    ds = _pet(SeriesDate="20200102", SeriesTime="000500", info_RadiopharmaceuticalStartDateTime="20200101235500")
    assert suv_factor(ds) == pytest.approx(_hand(600), rel=1e-12)
    # a timezone offset and fractional seconds (pydicom DT) are accepted; AcquisitionDate/Time as fallback
    ds = _pet(SeriesDate=None, SeriesTime=None, AcquisitionDate="20200101", AcquisitionTime="103000.5",
              info_RadiopharmaceuticalStartDateTime="20200101093000.25+0100")
    assert suv_factor(ds) == pytest.approx(_hand(3600.25), rel=1e-12)
    # a start date-time with a date only takes its clock time from RadiopharmaceuticalStartTime
    ds = _pet(info_RadiopharmaceuticalStartDateTime="20191231")
    assert suv_factor(ds) == pytest.approx(_hand(25 * 3600), rel=1e-12)


def test_24h_wrap_only_without_dates():
    late = _pet(SeriesTime="000500", info_RadiopharmaceuticalStartTime="235500")  # no injection date
    assert suv_factor(late) == pytest.approx(_hand(600), rel=1e-12)
    no_scan_date = _pet(SeriesDate=None, SeriesTime="000500", info_RadiopharmaceuticalStartDateTime="20200101235500")
    assert suv_factor(no_scan_date) == pytest.approx(_hand(600), rel=1e-12)


@pytest.mark.parametrize("field,value", [("SeriesDate", "2020-13-45"), ("SeriesTime", "99xx"),
                                         ("info_RadiopharmaceuticalStartTime", "ab:cd"),
                                         ("info_RadiopharmaceuticalStartDateTime", "2020010X1200")])
def test_unparseable_dates_name_the_tag(field, value):
    with pytest.raises(DataError, match=rf"p\.dcm: {field.removeprefix('info_')}"):
        suv_factor(_pet(**{field: value}), "p.dcm")


@pytest.mark.parametrize("value", ["abc", "", "0", "-70", "nan", "inf"])
def test_invalid_patient_weight_names_the_tag(value):
    with pytest.raises(DataError, match=r"p\.dcm: PatientWeight"):
        suv_factor(_pet(PatientWeight=value), "p.dcm")


def test_invalid_weight_in_a_real_slice_is_a_dataerror_naming_file_and_tag(tmp_path):
    info = _pet().RadiopharmaceuticalInformationSequence
    extra = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": "70.12345", "SeriesDate": "20200101",
             "SeriesTime": "103000", "RadiopharmaceuticalInformationSequence": info}
    path = _slice(tmp_path / "pet.dcm", modality="PT", extra=extra)
    data = path.read_bytes()
    assert data.count(b"70.12345") == 1
    path.write_bytes(data.replace(b"70.12345", b"seventy "))  # as a hospital export might hold it
    with pytest.raises(DataError, match=r"pet\.dcm: PatientWeight"):
        load_series([path])


def test_units_is_required():
    with pytest.raises(DataError, match=r"p\.dcm: Units .*missing"):
        suv_factor(_pet(Units=None), "p.dcm")
    with pytest.raises(DataError, match=r"p\.dcm: Units='CNTS'"):
        suv_factor(_pet(Units="CNTS"), "p.dcm")
    assert suv_factor(_pet(Units="GML")) == 1.0


@pytest.mark.parametrize("field", ["info_RadionuclideTotalDose", "info_RadionuclideHalfLife",
                                   "RadiopharmaceuticalInformationSequence"])
def test_missing_suv_tags_are_named(field):
    with pytest.raises(DataError, match=field.removeprefix("info_")):
        suv_factor(_pet(**{field: None}), "p.dcm")
    if field != "RadiopharmaceuticalInformationSequence":
        with pytest.raises(DataError, match=field.removeprefix("info_")):
            suv_factor(_pet(**{field: "x1"}), "p.dcm")


def test_missing_injection_and_scan_times_are_named():
    with pytest.raises(DataError, match="RadiopharmaceuticalStartTime missing"):
        suv_factor(_pet(info_RadiopharmaceuticalStartTime=None), "p.dcm")
    with pytest.raises(DataError, match="SeriesTime .*missing"):
        suv_factor(_pet(SeriesTime=None), "p.dcm")
    with pytest.raises(DataError, match="DecayCorrection='NONE'"):
        suv_factor(_pet(DecayCorrection="NONE"), "p.dcm")


# ---------------------------------------------------------------- 5: series assembly
def test_different_image_at_one_position_is_refused_or_counted(tmp_path):
    paths = _series(tmp_path / "s")
    other = _slice(tmp_path / "s" / "zz_other.dcm", 999, z=5.0, instance=50)  # not a copy of im002
    with pytest.raises(ConflictingSliceError, match=r"zz_other\.dcm: .*also that of .*im002\.dcm"):
        load_series(paths + [other])
    log = BadInputLog(skip_bad=True)
    volume = load_series(paths + [other], log=log)
    assert log.count == 1 and "zz_other.dcm" in log.skipped[0][0]
    np.testing.assert_array_equal(volume.array[:, 0, 0], [0, 10, 20, 30])  # the first kept, not silently replaced


def test_true_duplicates_dropped_and_counted(tmp_path):
    paths = _series(tmp_path / "s")
    copy = tmp_path / "s" / "copy_of_im001.dcm"
    shutil.copy(paths[1], copy)  # same SOPInstanceUID
    same_pixels = _slice(tmp_path / "s" / "resent.dcm", 20, z=5.0, instance=3)  # new UID, identical pixels
    volume = load_series(paths + [copy, same_pixels])
    assert volume.n_duplicates_dropped == 2 and volume.array.shape[0] == 4
    assert {d.name for _, d in volume.extra["duplicates"]} == {"copy_of_im001.dcm", "resent.dcm"}


def test_pixel_spacing_checked_on_every_slice(tmp_path):
    paths = _series(tmp_path / "s", n=3)
    odd = _slice(tmp_path / "s" / "im003.dcm", 30, z=7.5, instance=4, spacing=(0.9, 0.9))
    with pytest.raises(DataError, match=r"im003\.dcm: PixelSpacing .*differs"):
        load_series(paths + [odd])
    ds = pydicom.dcmread(paths[2])
    del ds.PixelSpacing
    ds.save_as(paths[2])
    with pytest.raises(DataError, match=r"im002\.dcm: PixelSpacing missing"):
        load_series(paths)


def test_orientation_checked_on_every_slice(tmp_path):
    paths = _series(tmp_path / "s", n=3)
    ds = pydicom.dcmread(paths[1])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.ImagePositionPatient = [2.5, 0, 0]
    ds.save_as(paths[1])
    with pytest.raises(DataError, match="ImageOrientationPatient"):
        load_series(paths)


@pytest.mark.parametrize("name", ["slice.dicom", "SLICE.IMA", "IM0001", "1.3.12.2.1107.5.1", "image.DCM", "x.bin"])
def test_dicom_recognised_by_content_not_name(tmp_path, name):
    _slice(tmp_path / "s" / name)
    (tmp_path / "s" / "LICENSE").write_text("TCIA data usage policy")
    (tmp_path / "s" / "notes.txt").write_bytes(b"\x00\x01binary junk" * 20)
    import nibabel
    from PIL import Image
    for mask in ("mask.nii", "mask.nii.gz"):
        nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.eye(4)), tmp_path / "s" / mask)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "s" / "thumb.png")
    ignored = []
    found = find_series(tmp_path, modality="CT", ignored=ignored)
    assert [p.name for p in found[0].files] == [name]
    assert {p.name for p, _ in ignored} == {"LICENSE", "notes.txt", "mask.nii", "mask.nii.gz", "thumb.png"}


def test_dicomdir_and_no_preamble_files_are_skipped_and_counted(tmp_path):
    _series(tmp_path / "study" / "s", n=2)
    from pydicom.data import get_testdata_file
    (tmp_path / "export").mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), tmp_path / "export" / "DICOMDIR")  # a real DICOMDIR
    shutil.copy(get_testdata_file("DICOMDIR"), tmp_path / "export" / "INDEX")  # under another name
    report = Dataset()  # a DICOM without preamble and without pixel data
    report.Modality = "SR"
    report.PatientID = "P1"
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    with pydicom.filebase.DicomFile(tmp_path / "study" / "s" / "report", "wb") as f:
        f.is_little_endian, f.is_implicit_VR = True, True
        pydicom.filewriter.write_dataset(f, report)
    ignored = []
    found = find_series(tmp_path, modality="CT", ignored=ignored)
    reasons = {p.name: r for p, r in ignored}
    assert "DICOMDIR" in reasons["DICOMDIR"] and "DICOMDIR" in reasons["INDEX"]
    assert [len(s.files) for s in found] == [2]
    # the SR without preamble has Modality, so it is parsed and left out by modality, not an abort
    assert is_dicom_candidate(tmp_path / "study" / "s" / "report") and "report" not in reasons
    (tmp_path / "study" / "s" / "junk_no_preamble").write_bytes(b"\x08\x00\x05\x00garbage" * 8)
    ignored = []
    assert [len(s.files) for s in find_series(tmp_path, modality="CT", ignored=ignored)] == [2]
    assert "junk_no_preamble" in {p.name for p, _ in ignored}


def test_slice_without_preamble_is_loaded(tmp_path):
    path = _slice(tmp_path / "s" / "IM1", 7)
    ds = pydicom.dcmread(path)
    ds.preamble = None
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    assert open(path, "rb").read(132)[128:132] != b"DICM" and is_dicom_candidate(path)
    volume = load_series(find_series(tmp_path, modality="CT")[0].files)
    assert volume.array[0, 0, 0] == 7


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_folder_is_named(tmp_path):
    _series(tmp_path / "a")
    locked = tmp_path / "b"
    _series(locked)
    locked.chmod(0)
    try:
        with pytest.raises(DataError, match=r"b: folder unreadable"):
            find_series(tmp_path, modality="CT")
        log = BadInputLog(skip_bad=True)
        assert len(find_series(tmp_path, modality="CT", log=log)) == 1 and log.count == 1
    finally:
        locked.chmod(0o755)


def test_walk_files_reports_oserror(tmp_path, monkeypatch):
    """Unlike rglob, an error while listing a folder reaches the log (simulated for root)."""
    _series(tmp_path / "a", n=1)

    def failing_walk(root, onerror=None):
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "LUNG1-007")))
        yield str(tmp_path / "a"), [], ["im000.dcm"]

    monkeypatch.setattr(os, "walk", failing_walk)
    with pytest.raises(DataError, match=r"LUNG1-007: folder unreadable \(PermissionError"):
        walk_files(tmp_path)
    log = BadInputLog(skip_bad=True)
    assert [p.name for p in walk_files(tmp_path, log=log)] == ["im000.dcm"] and log.count == 1


# ---------------------------------------------------------------- 10: variants
def test_modality_lut_sequence_on_unsigned_stored_values(tmp_path):
    path = _slice(tmp_path / "m.dcm")
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    item = Dataset()
    item.LUTDescriptor = [4, 1024, 16]
    item.add_new(0x00283006, "US", [5, 6, 7, 8])  # LUTData
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = Sequence([item])
    ds.PixelData = np.array([[1020, 1024], [1025, 1100]], np.uint16).tobytes()
    ds.Rows = ds.Columns = 2
    ds.save_as(path)
    np.testing.assert_array_equal(pixel_values(pydicom.dcmread(path), path), [[5, 5], [6, 8]])


def test_bad_modality_lut_names_the_file(tmp_path):
    path = _slice(tmp_path / "m.dcm")
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    ds.ModalityLUTSequence = Sequence([item])  # LUTData missing
    ds.save_as(path)
    with pytest.raises(DataError, match=r"m\.dcm: ModalityLUTSequence"):
        pixel_values(pydicom.dcmread(path), path)


def _enhanced(tmp_path, *, drop_position=False):
    stored = np.stack([np.full((4, 4), 1024 + 10 * k, np.uint16) for k in range(3)])
    path = write_slice(tmp_path / "enh.dcm", stored[0], modality="CT", patient_id="P1", series_uid="9.9",
                       study_uid="1.2")
    ds = pydicom.dcmread(path)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.NumberOfFrames = 3
    ds.PixelData = stored.tobytes()
    shared = Dataset()
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 2.0
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform.RescaleSlope, transform.RescaleIntercept = 1.0, -1024.0
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k, z in enumerate([4.0, 0.0, 2.0]):
        frame, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0, 0, z]
        if not (drop_position and k == 1):
            frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.save_as(path)
    return path


def test_enhanced_multiframe_supported(tmp_path):
    volume = load_series([_enhanced(tmp_path)])
    np.testing.assert_array_equal(volume.array[:, 0, 0], [10, 20, 0])  # sorted by z: frames 2, 3, 1
    assert volume.spacing_mm == pytest.approx((2.0, 0.5, 0.5))


def test_enhanced_frame_without_position_names_the_sequence(tmp_path):
    with pytest.raises(DataError, match=r"enh\.dcm: frame 2: PlanePositionSequence"):
        load_series([_enhanced(tmp_path, drop_position=True)])


def test_legacy_multiframe_is_unsupported(tmp_path):
    path = _slice(tmp_path / "mf.dcm")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = np.zeros((2, 4, 4), np.uint16).tobytes()
    ds.save_as(path)
    with pytest.raises(UnsupportedDataError, match=r"mf\.dcm: NumberOfFrames=2"):
        load_series([path])


@pytest.mark.parametrize("n_bytes", [132, 200, 400, 500, 600, 700, 735])
def test_header_cut_short_says_truncated(tmp_path, n_bytes):
    """Cut in the file meta, before Modality, or after it but before PixelData: never "Modality missing"."""
    path = _slice(tmp_path / "s" / "im.dcm")
    data = path.read_bytes()
    path.write_bytes(data[:n_bytes])
    with pytest.raises(TruncatedFileError, match=r"im\.dcm: truncated DICOM header"):
        found = find_series(tmp_path, modality="CT")  # before Modality: here; after it: when loading
        load_series(found[0].files)
    with pytest.raises(TruncatedFileError, match=r"im\.dcm: truncated"):
        read_dicom(path)


def test_pixel_data_cut_short_says_truncated(tmp_path):
    path = _slice(tmp_path / "im.dcm", shape=(16, 16))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(TruncatedFileError, match=r"im\.dcm: PixelData truncated"):
        load_series([path])


def test_compressed_without_decoder_names_the_package(tmp_path, monkeypatch):
    import medgan.data.dicom as dicom_module
    from pydicom.uid import JPEGLSLossless

    class Unavailable:
        is_available = False
        available_plugins = ()

    path = _slice(tmp_path / "ls.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xf7junk"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(MissingDecoderError, match=r"ls\.dcm: TransferSyntaxUID JPEG-LS.*pylibjpeg-libjpeg.*"
                                                  r"pip install medgan\[dicom\]"):
        load_series([path])


# ---------------------------------------------------------------- 13: every problem is a named DataError
def _damage(tmp_path):
    """(file, damage) pairs, one per kind; each must end in a DataError naming the file."""
    cases = {}
    folder = tmp_path / "s"

    def make(name, k, edit):
        path = _slice(folder / name, 10 * k, z=2.5 * k, instance=k + 1)
        if edit is not None:
            edit(path)
        cases[name] = path

    def set_tag(key, value):
        def edit(path):
            ds = pydicom.dcmread(path)
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
            ds.save_as(path)
        return edit

    make("ok0.dcm", 0, None)
    make("empty.dcm", 1, lambda p: p.write_bytes(b""))
    make("text.dcm", 2, lambda p: p.write_text("hello"))
    make("header.dcm", 3, lambda p: p.write_bytes(p.read_bytes()[:300]))
    make("pixels.dcm", 4, lambda p: p.write_bytes(p.read_bytes()[:-9]))
    make("nopos.dcm", 5, set_tag("ImagePositionPatient", None))
    make("nopid.dcm", 6, set_tag("PatientID", None))
    make("nan.dcm", 7, set_tag("RescaleSlope", "nan"))
    make("ok8.dcm", 8, None)
    return cases


def test_every_damage_is_a_named_dataerror_and_skip_bad_counts_it(tmp_path):
    cases = _damage(tmp_path)
    damaged = [name for name in cases if not name.startswith("ok")]
    for name in damaged:
        with pytest.raises(DataError, match=rf"{name}: "):
            load_series([cases["ok0.dcm"], cases[name], cases["ok8.dcm"]])
    log = BadInputLog(skip_bad=True)
    found = find_series(tmp_path, modality="CT", log=log)
    volume = None
    try:
        volume = load_series(found[0].files, log=log, spacing_tolerance=10.0)
    except DataError as exc:  # nopid makes the series subject unknown only if it is the first kept
        pytest.fail(f"skip_bad load failed: {exc}")
    assert volume.array.shape[0] == 2
    skipped = {os.path.basename(where) for where, _ in log.skipped}
    assert skipped >= set(damaged) - {"nopid.dcm"}


@pytest.mark.parametrize("keyword,text,expected", [
    ("ImagePositionPatient", "0\\0", "ImagePositionPatient needs 3"),
    ("ImagePositionPatient", "0\\x\\1", "ImagePositionPatient is not numeric"),
    ("ImageOrientationPatient", "1\\0\\0\\0\\1", "ImageOrientationPatient needs 6"),
    ("ImageOrientationPatient", "1\\0\\0\\1\\0\\0", "ImageOrientationPatient row and column directions are parallel"),
    ("InstanceNumber", "one", "InstanceNumber is not an integer"),
    ("PixelSpacing", "0.7", "PixelSpacing missing or invalid"),
    ("PixelSpacing", "0\\0.7", "PixelSpacing not positive"),
    ("RescaleSlope", "abc", "RescaleSlope"),
])
def test_malformed_geometry_tags_name_file_and_tag(tmp_path, keyword, text, expected):
    paths = _series(tmp_path / "s", n=3)
    ds = pydicom.dcmread(paths[1])
    _raw(ds, keyword, text)
    ds.save_as(paths[1])
    with pytest.raises(DataError, match=rf"im001\.dcm: .*{expected}"):
        load_series(paths)
    log = BadInputLog(skip_bad=True)
    if keyword != "PixelSpacing":  # a per-slice decode problem: skipped and counted
        assert load_series(paths, log=log, spacing_tolerance=10).array.shape[0] == 2 and log.count == 1
