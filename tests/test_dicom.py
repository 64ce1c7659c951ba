"""DICOM radiographs: display transform (rescale, window, VOI LUT, MONOCHROME1), check and pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, SecondaryCaptureImageStorage,
                         generate_uid)

from cxrdrift import data, dicom
from test_data import FOLDERS, make_tree

# 12-bit values of a 2 x 3 image: the window below maps 1000..3000 onto 0..1
STORED = np.array([[0, 1000, 1500], [2200, 3000, 4095]], np.uint16)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", syntax=ExplicitVRLittleEndian,
                **elements) -> Path:
    """A single-frame grayscale DICOM of `pixels` (uint16, 12 bits stored) with extra `elements`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for name, value in elements.items():
        setattr(ds, name, value)
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_window_and_monochrome1_hand_computed(tmp_path):
    # linear window, centre 2000.5, width 2001: (x - 2000) / 2000 + 0.5, clipped, times 255
    windowed = np.array([[0, 0, 64], [153, 255, 255]], np.uint8)  # 0.25 -> 63.75 -> 64, 0.6 -> 153
    mono2 = write_dicom(tmp_path / "m2.dcm", STORED, WindowCenter=2000.5, WindowWidth=2001)
    mono1 = write_dicom(tmp_path / "m1.dcm", STORED, "MONOCHROME1", WindowCenter=2000.5, WindowWidth=2001)
    np.testing.assert_array_equal(dicom.read(mono2), windowed)
    np.testing.assert_array_equal(dicom.read(mono1), [[255, 255, 191], [102, 0, 0]])  # white is low: 1 - y


def test_rescale_then_full_range_without_window(tmp_path):
    # slope 2, intercept -1000 changes nothing after min-max, but 4095 is the maximum: 1000 -> 62.27
    path = write_dicom(tmp_path / "r.dcm", STORED, RescaleSlope=2, RescaleIntercept=-1000)
    expected = np.round(STORED.astype(float) / 4095 * 255).astype(np.uint8)
    np.testing.assert_array_equal(dicom.read(path), expected)
    # the window is in rescaled units (2x - 1000 = -1000, 1000, 2000, 3400, 5000, 7190): a width-2
    # window centred on 2500.5 splits them between 2000 and 3000
    path = write_dicom(tmp_path / "rw.dcm", STORED, RescaleSlope=2, RescaleIntercept=-1000,
                       WindowCenter=2500.5, WindowWidth=2)
    np.testing.assert_array_equal(dicom.read(path), [[0, 0, 0], [255, 255, 255]])


def test_voi_lut_sequence(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]  # 4 entries for stored values 0..3, values beyond clamp to the last
    item.LUTData = [0, 100, 400, 800]
    item["LUTData"].VR = "US"
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 1], [2, 3]], np.uint16), VOILUTSequence=[item])
    np.testing.assert_array_equal(dicom.read(path), [[0, 32], [128, 255]])  # 100/800*255 = 31.9


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes(tmp_path, syntax):
    pixels = np.random.default_rng(0).integers(0, 4096, (64, 66)).astype(np.uint16)
    path = write_dicom(tmp_path / "c.dcm", pixels, syntax=syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    low, high = pixels.min(), pixels.max()
    np.testing.assert_array_equal(dicom.read(path),
                                  np.round((pixels - low) / (high - low) * 255).astype(np.uint8))


def test_not_a_radiograph_and_damaged(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom at all")
    with pytest.raises(dicom.DicomError, match="is not a readable DICOM file"):
        dicom.read(bad)
    path = write_dicom(tmp_path / "cut.dcm", STORED)
    path.write_bytes(path.read_bytes()[:-5])  # pixel data cut short
    with pytest.raises(dicom.DicomError, match="pixel data cannot be decoded"):
        dicom.read(path)


def test_dicom_folder_is_checked_and_fed_to_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv(dicom.CACHE_ENV, str(tmp_path / "cache"))
    root = make_tree(tmp_path / "ds")
    ramp = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    write_dicom(root / "train" / FOLDERS["Normal"] / "scan.dcm", ramp, "MONOCHROME1")
    write_dicom(root / "test" / FOLDERS["Normal"] / "tiny.DCM", STORED)
    (root / "test" / FOLDERS["Normal"] / "broken.dcm").write_bytes(b"\x00" * 200)
    report = data.check(root)
    errors = [p.message for p in report.errors]
    assert len(errors) == 1  # pydicom's own reason follows in parentheses
    assert errors[0].startswith("unreadable image test/NORMAL/broken.dcm: DICOM is not a readable DICOM file (")
    assert [p.message for p in report.warnings] == [
        "1 image(s) smaller than 64 px on the short side, which the pipeline would upsample to the model's "
        "input: test/NORMAL/tiny.DCM (3 x 2 px)"]
    assert report.counts.loc["train", "Normal"] == 3
    (root / "test" / FOLDERS["Normal"] / "broken.dcm").unlink()
    frame = data.load_index(root).split("train")
    frame = frame[frame["sample_id"] == "train/NORMAL/scan.dcm"]
    images = data.load_images(frame, 64)
    expected = 255 - np.round((ramp - ramp.min()) / (ramp.max() - ramp.min()) * 255).astype(np.uint8)
    assert images.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(images[0, :, :, 0], expected)
    np.testing.assert_array_equal(images[0, :, :, 2], expected)
    cached = list((tmp_path / "cache").rglob("*.png"))
    assert len(cached) == 1  # decoded once; the second pass reads the PNG
    stamp = cached[0].stat().st_mtime_ns
    np.testing.assert_array_equal(data.load_images(frame, 64), images)
    assert cached[0].stat().st_mtime_ns == stamp
