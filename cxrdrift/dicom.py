"""DICOM radiographs as the pipeline's 8-bit grayscale images (pydicom).

Hospital archives and several public sets ship `.dcm` files. The stored values become display
values the way a viewer shows them: the modality LUT (Rescale Slope/Intercept) first, then the VOI
transform — the VOI LUT when the file has one, otherwise the first Window Center/Width (the DICOM
linear function, PS3.3 C.11.2.1.2.1); without either, the image's own minimum and maximum span the
range. MONOCHROME1 images (white is low) are inverted so that bone is bright, as in MONOCHROME2 and
PNG radiographs. The result is scaled to 0..255. Compressed transfer syntaxes decode through
pydicom (RLE) and the pylibjpeg handlers (JPEG, JPEG lossless, JPEG-LS, JPEG 2000).

The tf.data pipeline reads a DICOM through its decoded 8-bit PNG, written once into
`$CXRDRIFT_DICOM_CACHE` (default `~/.cache/cxrdrift/dicom/`) and keyed by the file's path, size and
modification time, so no epoch pays pydicom's decoding again.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .layouts import DICOM_SUFFIXES, DatasetError


CACHE_ENV = "CXRDRIFT_DICOM_CACHE"
DECODER_VERSION = 1  # part of the cache key: a change to the display transform decodes again


class DicomError(DatasetError):
    """A DICOM file whose pixels cannot be turned into a radiograph."""


def is_dicom(path: str | Path) -> bool:
    """True for a `.dcm`/`.dicom` name (the loader decides by name, as it does for PNG and JPEG)."""
    return Path(str(path)).suffix.lower() in DICOM_SUFFIXES


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function onto [0, 1]."""
    if width < 1:
        raise DicomError(f"window width {width} is below 1")
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    """The first of a multi-valued DICOM element (Window Center may list several)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _span(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def to_uint8(dataset) -> np.ndarray:
    """Display pixels (H, W) uint8 of a pydicom Dataset; DicomError for what is no 2-D grayscale image."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises many kinds: no pixel data, no handler, damaged stream
        raise DicomError(f"its pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"is {photometric}, not a grayscale (MONOCHROME1/2) radiograph")
    if pixels.ndim != 2:
        raise DicomError(f"holds {pixels.shape[0]} frames; a radiograph is one frame")
    modality = apply_modality_lut(pixels, dataset)  # integers stay integers: a VOI LUT indexes with them
    values = np.asarray(modality, dtype=np.float64)
    if "VOILUTSequence" in dataset:
        shown = _span(np.asarray(apply_voi_lut(modality, dataset), dtype=np.float64))
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        shown = _window(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth))
    else:
        shown = _span(values)
    if photometric == "MONOCHROME1":
        shown = 1.0 - shown
    return np.round(shown * 255.0).astype(np.uint8)


def read(source: str | Path | bytes) -> np.ndarray:
    """Decode a DICOM file (a path or its bytes) to display pixels (H, W) uint8; DicomError if not."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    stream = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        dataset = pydicom.dcmread(stream)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise DicomError(f"is not a readable DICOM file ({exc})") from None
    return to_uint8(dataset)


def cache_dir() -> Path:
    """Where decoded DICOMs are kept: `$CXRDRIFT_DICOM_CACHE` or `~/.cache/cxrdrift/dicom`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "cxrdrift" / "dicom"


def decoded_png(path: str | Path) -> Path:
    """The 8-bit grayscale PNG of a DICOM file's display pixels, decoded on first use (written
    atomically); DicomError naming the file if it cannot be decoded."""
    from PIL import Image

    path = Path(path).resolve()
    info = path.stat()
    key = hashlib.sha1(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0{DECODER_VERSION}".encode()).hexdigest()
    target = cache_dir() / key[:2] / f"{key}.png"
    if target.is_file():
        return target
    try:
        pixels = read(path)
    except DicomError as exc:
        raise DicomError(f"DICOM {path} {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{key}.{os.getpid()}.tmp")
    Image.fromarray(pixels).save(temporary, format="PNG", compress_level=1)  # written once, read often: speed
    os.replace(temporary, target)
    return target


def decoded_paths(paths: Sequence[str], workers: int | None = None) -> list[str]:
    """`paths` with every DICOM replaced by its decoded PNG (`decoded_png`), in order."""
    positions = [i for i, p in enumerate(paths) if is_dicom(p)]
    if not positions:
        return list(paths)
    out = list(paths)
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        for i, png in zip(positions, pool.map(decoded_png, [paths[i] for i in positions])):
            out[i] = str(png)
    return out
