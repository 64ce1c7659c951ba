"""Built-in synthetic posteroanterior chest radiographs ("phantoms") with lesion masks.

Each image is a body outline with soft tissue, mediastinum, spine and heart shadow, two lung fields
of random shape, size and position, ribs, clavicles and diaphragm domes, seen through a random
exposure, contrast, rotation, shift and noise. Each class adds a lesion pattern drawn from
radiographic descriptions, clipped to the lung fields, and its binary mask is the explanation's
ground truth (the idea of the MRI lesion benchmark in ``paper/``): Normal (none), Pneumonia (lobar
consolidation, mostly one lung, middle/lower zone), Tuberculosis (upper-zone nodules and cavities),
COVID-19 (faint bilateral peripheral lower-zone ground glass) and Lung Opacity (patchy opacities of
any place and density, sometimes looking like the others). Intensities, sizes and places overlap on
purpose so that raw pixels do not separate the classes.

The pre-training source task (`source_task`) is a findings task, the way a chest X-ray network is
often pre-trained on an archive labelled with radiological findings before a diagnostic task:
which of four findings (consolidation, cavitating nodules, ground glass, patchy opacity) an image
shows, if any, and where (`pretrain` turns the lesion masks into per-cell finding maps). Each
finding is drawn the way the class it is typical of draws its lesions (`FINDING_PATTERNS`), from
the source's own random streams, so the archive shares the target's look but not its images, its
class mix or its labels: a frozen backbone learns to see the findings, and the diagnostic head
learns which finding means which class.

Rendering is vectorized over a batch: anatomy at half resolution, upsampled with a bilinear matrix
product; lesions as sums of separable Gaussians at full resolution (batched matrix products).
Every image draws its randomness from its own seed sequence, so an image never depends on which
batch or how large a split it was generated in.
"""
from __future__ import annotations

import functools
import shutil
import struct
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .artifacts import read_json, write_json, write_text
from .config import CLASSES
from .layouts import LUNG_MASKS_DIR

TABLE1_COUNTS = {"Normal": 317, "Pneumonia": 855, "Tuberculosis": 141, "COVID-19": 839,
                 "Lung Opacity": 1202}
TABLE1_PROPORTIONS = {name: count / sum(TABLE1_COUNTS.values()) for name, count in TABLE1_COUNTS.items()}
FINDINGS = ("consolidation", "cavitating nodules", "ground glass", "patchy opacity")
# the class whose lesion pattern draws each finding
FINDING_PATTERNS = dict(zip(FINDINGS, ("Pneumonia", "Tuberculosis", "COVID-19", "Lung Opacity")))
GENERATOR_VERSION = 4  # bump whenever the pixels change, so finished datasets are regenerated
MARKER = ".complete"
# How hard the generator's task is, as benchmarks/synth_ceiling.py measured it (`calibration`)
CALIBRATION_FILE = Path(__file__).with_name("synth_calibration.json")
PARAMS_FILE = "generator.json"

_MAX_LESIONS = 12          # Gaussian primitive slots per image
_N_GLOBAL = 48             # uniforms drawn per image: anatomy and exposure, then 8 lesion-pattern choices
_N_PER_LESION = 8          # uniforms drawn per lesion slot
_TEXTURE_GRID = 6          # control points per side of the low-frequency lesion texture
_RENDER_STREAM, _SOURCE_STREAM = 1, 2
# Lesions are drawn this many times denser than the descriptions' base amplitudes: conspicuous
# enough that backbones learning from scratch on two CPU cores see them within minutes, while a
# linear model on raw pixels still does not separate the classes (benchmarks/synth_ceiling.py).
_CLASS_CONTRAST = 1.6
_EXPOSURE_RAMP = 0.25      # largest brightness ramp across the film (heel effect), relative
# Shares of Lung Opacity images drawn like a lobar pneumonia and like bilateral lower-zone disease:
# ambiguous cases at about the rate at which a good model still confuses the real classes (at 0.04
# each, 20 of the reference CNN's 57 errors in benchmarks/synth_ceiling.py were Lung Opacity images
# called Pneumonia or COVID-19)
_LOOKS_LIKE_OTHERS = (0.025, 0.025)
_BATCH = 64


class SynthError(ValueError):
    """Bad arguments for the synthetic generator, or an output folder it must not overwrite."""


def calibration() -> dict | None:
    """The recorded reference-CNN and linear-model accuracies of this generator version
    (`benchmarks/synth_ceiling.py --record`), or None when none is recorded for this version."""
    if not CALIBRATION_FILE.is_file():
        return None
    recorded = read_json(CALIBRATION_FILE)
    return recorded if recorded.get("generator_version") == GENERATOR_VERSION else None


def split_class_counts(n: int, proportions: Mapping[str, float] = TABLE1_PROPORTIONS) -> dict[str, int]:
    """Split `n` images over the classes by largest remainder: exact total, at least 1 per class."""
    names = list(proportions)
    if n < len(names):
        raise SynthError(f"a split needs at least {len(names)} images (one per class), got {n}")
    weights = np.array([float(proportions[name]) for name in names])
    if np.any(weights < 0) or weights.sum() <= 0:
        raise SynthError(f"class proportions must be non-negative and not all zero: {dict(proportions)}")
    ideal = weights / weights.sum() * n
    counts = np.maximum(np.floor(ideal).astype(int), 1)
    order = np.argsort(-(ideal - counts), kind="stable")
    missing = n - int(counts.sum())
    counts[order[:missing]] += 1 if missing > 0 else 0
    while counts.sum() > n:  # the "at least 1" floor overshot: take from the most over-served class
        over = np.where(counts > 1, counts - ideal, -np.inf)
        counts[int(np.argmax(over))] -= 1
    return {name: int(count) for name, count in zip(names, counts)}


# ---------------------------------------------------------------------------------------------
# randomness


def _streams(seed: int, *keys: int) -> list[np.random.Generator]:
    """One generator per image, from (seed, *keys, index) with the last key an index array."""
    *fixed, indices = keys
    return [np.random.default_rng([int(seed), *map(int, fixed), int(i)]) for i in np.atleast_1d(indices)]


@functools.lru_cache(maxsize=4)
def _noise_pool(size: int) -> np.ndarray:
    """A fixed field of white noise, (2*size, 2*size); each image takes a random crop of it."""
    return np.random.default_rng(20240101).standard_normal((2 * size, 2 * size), dtype=np.float32)


def _draw(rngs: Sequence[np.random.Generator], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: uniforms for all parameters, the pixel noise and two texture control grids."""
    width = _N_GLOBAL + _MAX_LESIONS * _N_PER_LESION
    uniforms = np.empty((len(rngs), width))
    noise = np.empty((len(rngs), size, size), np.float32)
    texture = np.empty((len(rngs), 2, _TEXTURE_GRID, _TEXTURE_GRID))
    pool = _noise_pool(size)
    for row, rng in enumerate(rngs):
        uniforms[row] = rng.random(width)
        top, left = rng.integers(0, size, 2)
        noise[row] = pool[top:top + size, left:left + size]
        texture[row] = rng.standard_normal((2, _TEXTURE_GRID, _TEXTURE_GRID))
    return uniforms, noise, texture


def _span(u: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map uniforms in [0, 1) onto [low, high)."""
    return low + (high - low) * u


# ---------------------------------------------------------------------------------------------
# geometry


def _grid(n: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1]."""
    return ((np.arange(n) + 0.5) / n * 2.0 - 1.0).astype(np.float32)


def _bilinear_matrix(out: int, inp: int) -> np.ndarray:
    """(out, inp) matrix that resamples a 1-D signal of length `inp` to `out` linearly."""
    pos = np.clip((np.arange(out) + 0.5) * inp / out - 0.5, 0, inp - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, inp - 1)
    frac = pos - low
    matrix = np.zeros((out, inp), np.float32)
    matrix[np.arange(out), low] += 1 - frac
    matrix[np.arange(out), high] += frac
    return matrix


def _upsample(fields: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (N, L, L) fields to (N, size, size) by two matrix products."""
    matrix = _bilinear_matrix(size, fields.shape[-1])
    return matrix @ fields @ matrix.T


def _ramp(x: np.ndarray) -> np.ndarray:
    """A cheap soft step from 0 to 1 over x in [-2, 2] (a clipped linear stand-in for a sigmoid)."""
    return np.clip(0.5 + 0.25 * x, 0.0, 1.0)


def _anatomy(g: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image anatomy parameters from the global uniforms `g` (N, _N_GLOBAL)."""
    g = g.astype(np.float32)
    col = lambda i: g[:, i, None, None]  # noqa: E731 - broadcast one parameter over the grid
    p = {
        # patient positioning: wide enough that a lesion's place in the frame, which is all a
        # linear model on pixels sees, varies as much as its place in the lung
        "angle": np.deg2rad(_span(col(0), -9, 9)), "tx": _span(col(1), -0.12, 0.12),
        "ty": _span(col(2), -0.12, 0.12), "scale": _span(col(3), 0.80, 1.10),
        "body_w": _span(col(4), 0.74, 0.95),
        "heart_x": _span(col(5), 0.08, 0.2), "heart_y": _span(col(6), 0.16, 0.3),
        "heart_rx": _span(col(7), 0.27, 0.38), "heart_ry": _span(col(8), 0.2, 0.28),
        "med_w": _span(col(9), 0.1, 0.16), "rib_gap": _span(col(10), 0.12, 0.17),
        "rib_phase": _span(col(11), 0, 2 * np.pi), "rib_amp": _span(col(12), 0.04, 0.16),
        "rib_curve": _span(col(13), 0.4, 1.0), "clav_y": _span(col(14), -0.78, -0.62),
        "lung_dark": _span(col(15), 0.32, 0.5), "wobble_phase": _span(col(16), 0, 2 * np.pi),
    }
    for side, base in (("r", 17), ("l", 23)):  # patient's right lung is on the image's left
        p[f"{side}_cx"] = _span(col(base), 0.30, 0.44) * (-1 if side == "r" else 1)
        p[f"{side}_cy"] = _span(col(base + 1), -0.14, 0.04)
        p[f"{side}_a"] = _span(col(base + 2), 0.22, 0.32)
        p[f"{side}_b"] = _span(col(base + 3), 0.46, 0.64)
        p[f"{side}_dome"] = _span(col(base + 4), 0.12, 0.32)
        p[f"{side}_wobble"] = _span(col(base + 5), 0.0, 0.12)
    p["exposure"] = _span(g[:, 29], 1.4, 2.8)
    p["gamma"] = _span(g[:, 30], 0.75, 1.35)
    p["black"] = _span(g[:, 31], 0.0, 0.12)
    p["white"] = _span(g[:, 32], 0.82, 1.0)
    p["noise"] = _span(g[:, 33], 0.012, 0.045)
    p["soft"] = _span(col(34), 0.42, 0.62)
    p["markings"] = _span(col(35), 0.02, 0.08)
    # uneven exposure across the film (anode heel effect, patient thickness): a brightness ramp of
    # random direction and strength
    p["ramp_angle"] = _span(col(36), 0, 2 * np.pi)
    p["ramp"] = _span(col(37), 0.0, _EXPOSURE_RAMP)
    return p


def _taper(ly: np.ndarray) -> np.ndarray:
    """Width of a lung at height `ly` (-1 apex, 1 base) relative to its half-width: narrow at the apex."""
    return 0.45 + 0.55 * np.sqrt(np.clip((ly + 1.0) / 1.1, 0.0, 1.0))


def _lung_coords(p: dict, side: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lung-local coordinates of body-space points: lateral (-1 medial, 1 lateral) and vertical."""
    sign = -1.0 if side == "r" else 1.0
    ly = (v - p[f"{side}_cy"]) / p[f"{side}_b"]
    wobble = 1.0 + p[f"{side}_wobble"] * np.sin(3.0 * ly + p["wobble_phase"])
    lx = sign * (u - p[f"{side}_cx"]) / (p[f"{side}_a"] * _taper(ly) * wobble)
    return lx, ly


def _render_anatomy(p: dict, low: int, mottle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density of the anatomy and the visible-lung field, both (N, low, low) on the image grid.

    (u, v) are body coordinates: the image grid turned, shifted and scaled by each image's pose.
    """
    x = _grid(low)[None, None, :]
    y = _grid(low)[None, :, None]
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    u = ((x - p["tx"]) * cos + (y - p["ty"]) * sin) / p["scale"]
    v = (-(x - p["tx"]) * sin + (y - p["ty"]) * cos) / p["scale"]
    edge = 24.0 * low / 64
    half_width = p["body_w"] * (1.0 - 0.12 * (v - 0.25) ** 2)
    body = _ramp(edge * 3 * (half_width - np.abs(u)))
    lungs, below = np.zeros_like(u), {}
    hilum = np.zeros_like(u)  # vessels fan out from the hilum: medial lung is less dark
    for side in ("r", "l"):
        lx, ly = _lung_coords(p, side, u, v)
        outline = 1.0 - lx**2 - np.minimum(ly, 0.0) ** 2
        base = 1.0 - p[f"{side}_dome"] * (1.0 - np.clip(lx, -1, 1) ** 2) - ly
        lung = _ramp(edge * outline) * _ramp(edge * 2 * base)
        below[side] = _ramp(-edge * 2 * base)  # under this side's diaphragm dome
        lungs = lungs + lung
        hilum = hilum + lung * np.clip(0.6 - 0.5 * (lx + 1.0) - 0.3 * np.abs(ly), 0.0, 1.0)
    # the heart: a rounded top, sides that widen down to the diaphragm, which hides its base
    heart_v = (v - p["heart_y"]) / p["heart_ry"]
    heart_u = (u - p["heart_x"]) / (p["heart_rx"] * (0.85 + 0.2 * np.clip(heart_v, -1.0, 1.0)))
    heart = _ramp(edge * (1.0 - heart_u**2 - np.minimum(heart_v, 0.0) ** 2))
    mediastinum = _ramp(edge * 6 * (p["med_w"] * (1.15 - 0.25 * v) - np.abs(u + 0.02)))
    spine = _ramp(edge * 8 * (0.055 - np.abs(u)))
    lung_vis = lungs * (1.0 - heart) * (1.0 - mediastinum)
    rib_t = v + p["rib_curve"] * (np.abs(u) - 0.3) ** 2
    rib_t = rib_t + 0.2 * rib_t**2  # ribs spread apart towards the base
    ribs = np.maximum(np.cos(2 * np.pi * rib_t / p["rib_gap"] + p["rib_phase"]), 0.0) ** 3
    thorax = _ramp(edge * (0.55 - v)) * _ramp(edge * (0.9 - np.abs(u)))
    clavicle = _ramp(edge * 4 * (0.03 - np.abs(v - p["clav_y"] - 0.18 * np.abs(u) ** 1.5))) \
        * _ramp(edge * (0.62 - np.abs(u)))
    abdomen = np.where(u < 0, below["r"], below["l"]) * _ramp(edge * (v - 0.1))
    density = body * (p["soft"] + 0.15 * abdomen + p["rib_amp"] * ribs * thorax * (0.4 + 0.6 * lungs)
                      + 0.12 * clavicle + 0.16 * heart * (1.0 - abdomen)) + 0.2 * mediastinum + 0.03 * spine \
        - lung_vis * (p["lung_dark"] * (1.0 - 0.45 * hilum) - p["markings"] * mottle)
    return density.astype(np.float32), np.clip(lung_vis, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# lesions: each slot is a separable blob (Gaussian or flatter) placed in lung-local coordinates


def _empty_lesions(n: int) -> dict[str, np.ndarray]:
    shape = (n, _MAX_LESIONS)
    return {"side": np.zeros(shape), "lx": np.zeros(shape), "ly": np.zeros(shape),
            "sx": np.full(shape, 0.1), "sy": np.full(shape, 0.1), "amp": np.zeros(shape),
            "hole": np.zeros(shape), "flat": np.full(shape, 2.0), "fissure": np.zeros(shape),
            "patchy": np.full(shape, 0.45)}


def _class_lesions(label: str, lu: np.ndarray, choice: np.ndarray) -> dict[str, np.ndarray]:
    """Lesion slots of one class from per-slot uniforms `lu` (n, _MAX_LESIONS, _N_PER_LESION) and
    per-image uniforms `choice` (n, 8) for the pattern-wide choices (side, count, ...).

    side 0 = right lung (image left), 1 = left lung; lx in [-1, 1] medial to lateral; ly in [-1, 1]
    apex to base; sizes relative to the lung's half-width/half-height; amp is added density.
    """
    n = lu.shape[0]
    les = _empty_lesions(n)
    if label == "Normal" or n == 0:
        return les
    u = lambda j: lu[:, :, j]  # noqa: E731
    first = choice[:, None, :]
    slot = np.arange(_MAX_LESIONS)[None, :]
    faint = np.where(first[:, :, 7] < 0.1, 0.75, 1.0)  # one image in ten is fainter
    if label == "Pneumonia":
        main_side = (first[:, :, 0] < 0.5).astype(float)
        bilateral = first[:, :, 1] < 0.15
        count = 1 + np.floor(first[:, :, 2] * 2)  # the consolidation and perhaps a satellite near it
        les["side"] = np.where(slot == count, 1 - main_side, main_side)
        main_lx, main_ly = _span(first[:, :, 3], -0.4, 0.6), _span(first[:, :, 4], -0.05, 0.65)
        les["lx"] = np.where(slot == 0, main_lx, np.clip(main_lx + _span(u(3), -0.4, 0.4), -0.6, 0.8))
        les["ly"] = np.where(slot == 0, main_ly, np.clip(main_ly + _span(u(4), -0.35, 0.35), -0.3, 0.8))
        les["sx"] = np.where(slot == 0, _span(u(5), 0.55, 0.9), _span(u(5), 0.15, 0.35))
        les["sy"] = np.where(slot == 0, _span(u(6), 0.25, 0.45), _span(u(6), 0.1, 0.25))
        les["amp"] = np.where(slot < count + bilateral, np.where(slot == 0, _span(u(7), 0.3, 0.6),
                                                                    _span(u(7), 0.18, 0.45)), 0.0) * faint
        les["flat"] = np.where(slot == 0, _span(first[:, :, 6], 2.5, 3.5), 2.0)
        les["fissure"] = ((slot == 0) & (first[:, :, 5] < 0.75)).astype(float)
        les["patchy"] = np.full_like(les["amp"], 0.25)
    elif label == "Tuberculosis":
        count = 3 + np.floor(first[:, :, 2] * 8)
        bilateral = first[:, :, 1] < 0.4
        main_side = (first[:, :, 0] < 0.5).astype(float)
        les["side"] = np.where(bilateral & (u(0) < 0.4), 1 - main_side, main_side)
        les["lx"] = _span(u(3), -0.6, 0.7)
        les["ly"] = _span(u(4), -0.95, -0.35)
        cavity = (slot == 0) & (first[:, :, 3] < 0.8)
        les["hole"] = cavity.astype(float)
        les["sx"] = np.where(cavity, _span(u(5), 0.2, 0.3), _span(u(5), 0.08, 0.16))
        les["sy"] = les["sx"] * _span(u(6), 0.8, 1.25) * 0.5
        les["amp"] = np.where(slot < count, _span(u(7), 0.35, 0.65), 0.0) * faint
    elif label == "COVID-19":
        count = 4 + np.floor(first[:, :, 2] * 5)
        les["side"] = np.repeat(slot % 2, n, axis=0).astype(float)  # alternate lungs: bilateral
        dominant = first[:, :, 1] < 0.2  # some cases are clearly worse on one side
        les["lx"] = _span(u(3), 0.35, 0.9)
        les["ly"] = _span(u(4), 0.05, 0.85)
        les["sx"] = _span(u(5), 0.2, 0.4)
        les["sy"] = _span(u(6), 0.18, 0.35)
        weak = np.where(dominant & (slot % 2 == 1), 0.45, 1.0)
        les["amp"] = np.where(slot < count, _span(u(7), 0.14, 0.3), 0.0) * weak * faint
        les["patchy"] = np.full_like(les["amp"], 0.6)
    elif label == "Lung Opacity":
        # mostly scattered mottled patches anywhere; a few cases look like pneumonia or like
        # bilateral lower-zone disease (_LOOKS_LIKE_OTHERS)
        mode = first[:, :, 1]
        lobar, lower_zone = mode < _LOOKS_LIKE_OTHERS[0], mode < sum(_LOOKS_LIKE_OTHERS)
        count = np.where(lobar, 1, 3 + np.floor(first[:, :, 2] * 4))
        les["side"] = np.where(lobar, (first[:, :, 0] < 0.5).astype(float),
                               np.where(lower_zone, (slot % 2).astype(float), (u(0) < 0.5).astype(float)))
        les["lx"] = np.where(lower_zone, _span(u(3), -0.2, 0.8), _span(u(3), -0.6, 0.8))
        les["ly"] = np.where(lower_zone, _span(u(4), 0.0, 0.8), _span(u(4), -0.55, 0.85))
        les["patchy"] = np.full_like(les["lx"], 1.1)
        les["sx"] = np.where(lobar, _span(u(5), 0.3, 0.55), _span(u(5), 0.12, 0.26))
        les["sy"] = les["sx"] * _span(u(6), 0.5, 1.0)
        les["amp"] = np.where(slot < count, _span(u(7), 0.22, 0.5), 0.0) * faint
    else:
        raise SynthError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    return les


def _texture(texture: np.ndarray, size: int) -> np.ndarray:
    """Smooth random fields (N, size, size) from control-point grids (N, G, G), about unit spread."""
    centres = np.linspace(-1.1, 1.1, texture.shape[-1])
    basis = np.exp(-0.5 * ((_grid(size)[:, None] - centres[None, :]) / 0.22) ** 2).astype(np.float32)
    return basis @ texture.astype(np.float32) @ basis.T


def _render_lesions(p: dict, les: dict, mottle: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lesion density and lesion shape (peak 1 per blob), both (N, size, size) in image space."""
    cos, sin = np.cos(p["angle"][:, :, 0]), np.sin(p["angle"][:, :, 0])
    scale = p["scale"][:, :, 0]
    sign = np.where(les["side"] == 0, -1.0, 1.0)
    cx = np.where(les["side"] == 0, p["r_cx"][:, :, 0], p["l_cx"][:, :, 0])
    cy = np.where(les["side"] == 0, p["r_cy"][:, :, 0], p["l_cy"][:, :, 0])
    a = np.where(les["side"] == 0, p["r_a"][:, :, 0], p["l_a"][:, :, 0])
    b = np.where(les["side"] == 0, p["r_b"][:, :, 0], p["l_b"][:, :, 0])
    # centres stay above the diaphragm dome and, in the left lung, lateral to the heart
    ly = np.minimum(les["ly"], 0.62 - 0.3 * (1.0 - np.clip(les["lx"], -1, 1) ** 2))
    lx = np.where((les["side"] == 1) & (ly > 0.1), np.maximum(les["lx"], 0.0), les["lx"])
    bu = cx + sign * lx * a * _taper(ly)
    bv = cy + ly * b
    x0 = p["tx"][:, :, 0] + scale * (bu * cos - bv * sin)
    y0 = p["ty"][:, :, 0] + scale * (bu * sin + bv * cos)
    pixel = 2.0 / size  # at least a pixel wide, so that every lesion shows in its mask
    sx = np.maximum(les["sx"] * a * scale, pixel)
    sy = np.maximum(les["sy"] * b * scale, pixel)
    grid = _grid(size)[None, None, :]
    flat = les["flat"][..., None]  # profile exponent: 2 Gaussian, larger = homogeneous, sharper rim
    gx = np.exp(-0.5 * np.abs((grid - x0[..., None]) / sx[..., None]) ** flat).astype(np.float32)
    gy = np.exp(-0.5 * np.abs((grid - y0[..., None]) / sy[..., None]) ** flat).astype(np.float32)
    # a fissure: a lobar consolidation stops at a sharp, nearly horizontal upper border
    border = y0[..., None] - 0.5 * sy[..., None]
    gy *= np.where(les["fissure"][..., None] > 0, _ramp((grid - border) * size * 2.0), 1.0).astype(np.float32)
    hx = np.exp(-0.5 * ((grid - x0[..., None]) / (0.45 * sx[..., None])) ** 2).astype(np.float32)
    hy = np.exp(-0.5 * ((grid - y0[..., None]) / (0.45 * sy[..., None])) ** 2).astype(np.float32)
    amp = les["amp"].astype(np.float32)[..., None]
    hole = (les["hole"] * les["amp"] * 1.5).astype(np.float32)[..., None]
    active = (les["amp"] > 0).astype(np.float32)[..., None]
    # rows (y) x slots @ slots x columns (x): a sum of separable blobs per image
    density = np.swapaxes(gy * amp, 1, 2) @ gx - np.swapaxes(hy * hole, 1, 2) @ hx
    shape = np.swapaxes(gy * active, 1, 2) @ gx
    patchy = les["patchy"][:, :1, None].astype(np.float32)
    density = np.maximum(density, 0.0) * np.clip(1.0 + patchy * mottle, 0.2, 2.2)
    return density, shape


def _render(labels: Sequence[str], size: int, rngs: Sequence[np.random.Generator]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one batch: uint8 images, bool lesion masks and bool lung fields, (N, size, size) each."""
    n = len(labels)
    if size < 16:
        raise SynthError(f"image size must be at least 16 pixels, got {size}")
    if n == 0:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), bool), np.zeros((0, size, size), bool)
    uniforms, noise, texture = _draw(rngs, size)
    p = _anatomy(uniforms[:, :_N_GLOBAL])
    lesion_u = uniforms[:, _N_GLOBAL:].reshape(n, _MAX_LESIONS, _N_PER_LESION)
    les = _empty_lesions(n)
    labels_arr = np.asarray(labels)
    for name in dict.fromkeys(labels):
        rows = labels_arr == name
        for key, value in _class_lesions(name, lesion_u[rows], uniforms[rows, 40:48]).items():
            les[key][rows] = value
    les["amp"] = les["amp"] * _CLASS_CONTRAST
    # everything smooth is drawn at half resolution, then upsampled; only the noise is full size
    low = (size + 1) // 2
    lesion_mottle, lung_mottle = np.moveaxis(_texture(texture, low), 1, 0)
    density, lung = _render_anatomy(p, low, lung_mottle)
    lesion_density, lesion_shape = _render_lesions(p, les, lesion_mottle, low)
    density += lesion_density * lung
    col = lambda v: v[:, None, None].astype(np.float32)  # noqa: E731
    bright = (1.0 - np.exp(-col(p["exposure"]) * np.maximum(density, 0.0))) / (1.0 - np.exp(-col(p["exposure"])))
    bright = np.clip(bright, 0.0, 1.0) ** col(p["gamma"])
    bright = col(p["black"]) + (col(p["white"]) - col(p["black"])) * bright
    x, y = _grid(low)[None, None, :], _grid(low)[None, :, None]
    bright = bright * (1.0 + p["ramp"] * (np.cos(p["ramp_angle"]) * x + np.sin(p["ramp_angle"]) * y))
    bright = _upsample(bright, size) + col(p["noise"]) * noise
    images = np.clip(bright * 255.0 + 0.5, 0, 255).astype(np.uint8)
    masks = _upsample(np.minimum(lesion_shape, lung) - 0.5, size) > 0
    return images, masks, _upsample(lung, size) > 0.5


def render_batch(labels: Sequence[str], size: int, seed: int, *,
                 return_lungs: bool = False) -> tuple[np.ndarray, ...]:
    """Phantom radiographs of the given classes: images uint8 (N,S,S), lesion masks bool (N,S,S)
    and, with `return_lungs`, the visible lung fields bool (N,S,S). Image i depends on (seed, i, label)."""
    unknown = sorted(set(labels) - set(CLASSES))
    if unknown:
        raise SynthError(f"unknown class(es) {unknown}; expected names from {list(CLASSES)}")
    images, masks, lungs = _render(list(labels), size, _streams(seed, _RENDER_STREAM, np.arange(len(labels))))
    return (images, masks, lungs) if return_lungs else (images, masks)


def _source_render(n: int, size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Source-task images, lesion masks, lung fields (N, S, S) each, and finding (N,) int: an index
    into `FINDINGS`, or -1 for an image without one (one in five)."""
    rngs = _streams(seed, _SOURCE_STREAM, np.arange(n))
    finding = np.array([rng.integers(len(FINDINGS) + 1) for rng in rngs], int).reshape(n) - 1
    labels = ["Normal" if f < 0 else FINDING_PATTERNS[FINDINGS[f]] for f in finding]
    return (*_render(labels, size, rngs), finding)


def source_task(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-training source task: images uint8 (N,S,S), float32 (N, 4) finding labels (which of the
    `FINDINGS` the image shows; none for one image in five) and the lesion masks bool (N,S,S),
    where the finding is drawn."""
    images, masks, _, finding = _source_render(n, size, seed)
    labels = (finding[:, None] == np.arange(len(FINDINGS))[None, :]).astype(np.float32)
    return images, labels, masks


# ---------------------------------------------------------------------------------------------
# dataset on disk


def _split_key(split: str) -> int:
    return zlib.crc32(split.encode())


def _png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of `pixels` (H, W) uint8.

    Written by hand because Pillow tries all five row filters on every row, which costs about
    1 ms per 224 px image, 40 % of the whole budget per image; here rows are unfiltered and
    deflated with run-length matching only (noise does not compress anyway). Pillow reads them.
    """
    height, width = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = np.zeros((height, width + 1), np.uint8)  # each row starts with filter type 0 (none)
    rows[:, 1:] = pixels
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    idat = packer.compress(rows.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(_png_bytes(pixels))


def _validate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    clean = {}
    for split, n in counts.items():
        if not isinstance(split, str) or not split or "/" in split or split in ("masks", LUNG_MASKS_DIR):
            raise SynthError(f"split name {split!r} is not a usable folder name")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise SynthError(f"image count for split {split!r} must be a non-negative integer, got {n!r}")
        clean[split] = int(n)
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise SynthError(f"image size must be an integer of at least 16 pixels, got {size!r}")
    return clean


def generate_dataset(out: str | Path, counts: Mapping[str, int], size: int, seed: int, lungs: bool = False) -> Path:
    """Write `<out>/<split>/<class>/<id>.png` and `<out>/masks/<split>/<class>/<id>.png` (0/255),
    with `lungs` also the visible lung fields as `<out>/lung_masks/<split>/<class>/<id>.png`.

    Class mix per split follows Table 1 (`split_class_counts`). Image k of a class draws its
    randomness from (seed, split, class, k). A finished folder with the same parameters is kept; a
    partial one (no `.complete` marker) or one with other parameters is generated again.
    """
    out = Path(out)
    counts = _validate(counts, size)
    params = {"generator": "cxrdrift.synth", "version": GENERATOR_VERSION, "seed": int(seed),
              "size": int(size), "counts": counts, "classes": list(CLASSES),
              "proportions": TABLE1_PROPORTIONS, **({"lung_masks": True} if lungs else {})}
    marker, params_file = out / MARKER, out / PARAMS_FILE
    if marker.exists() and params_file.exists() and read_json(params_file) == params:
        return out
    if out.exists() and any(out.iterdir()):
        if not params_file.exists():
            raise SynthError(f"{out} is not empty and holds no synthetic dataset ({PARAMS_FILE}); "
                             "choose an empty or new folder")
        marker.unlink(missing_ok=True)
        for old_split in read_json(params_file).get("counts", {}):
            shutil.rmtree(out / old_split, ignore_errors=True)
        shutil.rmtree(out / "masks", ignore_errors=True)
        shutil.rmtree(out / LUNG_MASKS_DIR, ignore_errors=True)
    plan = {split: split_class_counts(n) if n else dict.fromkeys(CLASSES, 0) for split, n in counts.items()}
    write_json(params_file, params)  # first, so a partial folder is recognisably ours
    for split, per_class in plan.items():
        for class_index, name in enumerate(CLASSES):
            image_dir, mask_dir = out / split / name, out / "masks" / split / name
            lung_dir = out / LUNG_MASKS_DIR / split / name
            image_dir.mkdir(parents=True, exist_ok=True)
            mask_dir.mkdir(parents=True, exist_ok=True)
            if lungs:
                lung_dir.mkdir(parents=True, exist_ok=True)
            for start in range(0, per_class[name], _BATCH):
                ids = np.arange(start, min(start + _BATCH, per_class[name]))
                rngs = _streams(seed, _split_key(split), class_index, ids)
                images, masks, lung_fields = _render([name] * len(ids), size, rngs)
                for k, image, mask, lung in zip(ids, images, masks, lung_fields):
                    _write_png(image_dir / f"{k:06d}.png", image)
                    _write_png(mask_dir / f"{k:06d}.png", mask.astype(np.uint8) * 255)
                    if lungs:
                        _write_png(lung_dir / f"{k:06d}.png", lung.astype(np.uint8) * 255)
    write_text(marker, "complete\n")
    return out
