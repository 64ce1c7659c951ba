"""Every knob of the study in one typed object, the three profiles, and type-checked overrides.

Each field's metadata says where its default comes from: a section of the paper, or
"assumption" when the paper does not give the value. `assumptions()` lists the latter for the
book's "Protocol and assumptions" page.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ARCHITECTURES = ("DenseNet201", "ResNet50V2", "InceptionV3")
# The five diagnoses in label-index order (also `cxrdrift.data.CLASSES`, the name DESIGN.md gives them).
CLASSES: tuple[str, ...] = ("Normal", "Pneumonia", "Tuberculosis", "COVID-19", "Lung Opacity")
CAM_METHODS = ("gradcam", "gradcampp", "layercam")
PROFILES = ("paper", "demo", "smoke")


class ConfigError(ValueError):
    """An unknown, ill-typed or inconsistent configuration value."""


def _knob(default: Any, source: str, help: str, choices: tuple | None = None) -> Any:
    metadata = {"source": source, "help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=metadata)


PAPER = "paper"
ASSUMED = "assumption: not stated in the paper"


@dataclass(frozen=True)
class RunConfig:
    """The resolved configuration of one run; `config.json` in the run directory holds it."""

    # -- where things are ------------------------------------------------------------------
    profile: str = _knob("paper", "cxrdrift", "Profile the other defaults came from.", PROFILES)
    run_dir: str = _knob("", "cxrdrift", "Run directory; empty means runs/<profile>.")
    data_dir: str = _knob(
        "", "cxrdrift",
        "Dataset root (folders or a manifest.csv); empty means generate the synthetic dataset "
        "into <run_dir>/data.")
    # -- data -----------------------------------------------------------------------------
    image_size: int = _knob(224, ASSUMED + " (the Keras applications' native 224 px)",
                            "Square input size in pixels, shared by all architectures.")
    augment: bool = _knob(False, ASSUMED + " (no augmentation is named)",
                          "Mild random shift/zoom/brightness/contrast on training images (never flips: laterality matters).")
    synth_train: int = _knob(11733, PAPER + " §3.1 split size",
                             "Synthetic dataset: training images (class mix follows Table 1).")
    synth_val: int = _knob(1675, PAPER + " §3.1 split size", "Synthetic dataset: validation images.")
    synth_test: int = _knob(3354, PAPER + " §3.1 split size", "Synthetic dataset: test images.")
    synth_size: int = _knob(256, "cxrdrift", "Synthetic dataset: generated image size in pixels.")
    synth_lung_masks: bool = _knob(False, "cxrdrift",
                                   "Synthetic dataset: also write the lung fields as masks (lung_masks/), "
                                   "which chapter 08 scores the maps against.")
    class_map: str = _knob("", "cxrdrift",
                           "Dataset folder or label names mapped onto the five classes, e.g. "
                           "'Viral Pneumonia=Pneumonia,Bacterial Pneumonia=Pneumonia'; unmapped names "
                           "go through the usual aliases (COVID, TB, Lung_Opacity).")
    # -- models and weights -----------------------------------------------------------------
    architectures: tuple[str, ...] = _knob(ARCHITECTURES, PAPER + " §3.1",
                                           "Backbones to train and compare.", ARCHITECTURES)
    weights: str = _knob(
        "imagenet", PAPER + " §3.1 (ImageNet-pretrained)",
        "'imagenet', 'synthetic' (built-in within-domain pre-training), 'none' (random), or a "
        "path to a weights file ('{arch}' in the path is replaced by the architecture name).")
    pretrain_images: int = _knob(1600, "cxrdrift", "Synthetic pre-training: source-task images.")
    pretrain_epochs: int = _knob(6, "cxrdrift", "Synthetic pre-training: epochs from scratch.")
    pretrain_lr: float = _knob(1e-3, "cxrdrift", "Synthetic pre-training: Adam learning rate.")
    pretrain_bn_momentum: float = _knob(
        0.9, "cxrdrift (FINDINGS: Keras' 0.99 lags from-scratch weights)",
        "Synthetic pre-training: BatchNorm momentum.")
    pretrain_bn_epochs: int = _knob(
        2, "cxrdrift", "Synthetic pre-training: passes that re-estimate BatchNorm statistics.")
    pretrain_dense: bool = _knob(
        True, "cxrdrift",
        "Synthetic pre-training: also predict which finding lies in which cell of the backbone's "
        "output grid and of a grid twice as fine (labels from the lesion masks), not only image labels.")
    pretrain_bn_images: int = _knob(
        0, "cxrdrift", "Synthetic pre-training: source images the BatchNorm passes run over; 0 means all.")
    pretrain_bf16: tuple[str, ...] = _knob(
        (), "cxrdrift",
        "Synthetic pre-training: architectures whose training steps compute in bfloat16 (float32 "
        "weights) where the CPU does so natively (avx512_bf16 or amx_bf16); float32 elsewhere. "
        "benchmarks/pretrain_precision.py measured 1.8x / 1.6x / 1.1x the images per second of "
        "float32 for DenseNet201 / ResNet50V2 / InceptionV3. BatchNorm statistics are re-estimated, "
        "and the source task scored, in float32.", ARCHITECTURES)
    pretrain_seed: int = _knob(-1, "cxrdrift",
                               "Synthetic pre-training seed; -1 uses `seed` (replicates keep the main run's).")
    pretrain_size: int = _knob(
        0, "cxrdrift (convolution weights do not depend on the input size)",
        "Synthetic pre-training: input size in pixels; 0 means image_size. BatchNorm statistics "
        "are re-estimated at image_size afterwards, but learnt features are scale-specific: "
        "ResNet50V2 pre-trained at 80 px scored source AUC 0.77 at 80 px and 0.60 at 128 px.")
    # -- the two-phase protocol ---------------------------------------------------------------
    epochs_tl: int = _knob(10, PAPER + " §3.1 (epochs 1-10)", "Transfer-learning epochs, backbone frozen.")
    epochs_ft: int = _knob(10, PAPER + " §3.1 (epochs 11-20)", "Fine-tuning epochs, whole network trainable.")
    early_epoch: int = _knob(8, PAPER + " §3.1 (transfer-learning plateau)",
                             "Earlier compared checkpoint (1-based epoch).")
    late_epoch: int = _knob(19, PAPER + " §3.1 (fine-tuning convergence)",
                            "Later compared checkpoint (1-based epoch).")
    lr_tl: float = _knob(1e-3, ASSUMED + " (usual Keras transfer-learning value)",
                         "Adam learning rate of the frozen phase.")
    lr_ft: float = _knob(1e-5, ASSUMED + " (usual Keras fine-tuning value)",
                         "Adam learning rate of the fine-tuning phase (a fresh optimizer).")
    finetune_images: int = _knob(0, "cxrdrift",
                                 "Fine-tuning: training images per fine-tuning epoch, the first of that epoch's "
                                 "order (so each epoch sees another draw); 0 means all of them.")
    finetune_bf16: tuple[str, ...] = _knob(
        (), "cxrdrift",
        "Fine-tuning: architectures whose fine-tuning steps compute in bfloat16 (float32 weights, "
        "float32 logits) where the CPU does so natively (avx512_bf16 or amx_bf16) and mixed precision "
        "is off; float32 elsewhere. The frozen phase and every CAM stay float32.", ARCHITECTURES)
    head_init: str = _knob("glorot_uniform", ASSUMED + " (Keras's Dense default)",
                           "Initial weights of the logits head: Keras's random default, or zeros (as in BiT's "
                           "fine-tuning), which leaves a seed's head to the data order alone.",
                           ("glorot_uniform", "zeros"))
    bn_frozen_in_ft: bool = _knob(True, ASSUMED + " (Keras transfer-learning guide)",
                                  "Keep BatchNorm layers in inference mode while fine-tuning.")
    batch_size: int = _knob(32, ASSUMED, "Training batch size.")
    seed: int = _knob(0, ASSUMED + " (no seed is reported)", "Seed for data order, weights and synthesis.")
    save_epochs: str = _knob("all", "cxrdrift",
                             "Checkpoints to keep: 'all' or 'compared' (the CAM epochs only).",
                             ("all", "compared"))
    cache_frozen_features: bool = _knob(
        True, "cxrdrift", "Frozen phase: train the head on pooled features computed once.")
    mixed_precision: str = _knob("auto", "cxrdrift",
                                 "'auto' (on with a GPU), 'on' or 'off'; logits stay float32.",
                                 ("auto", "on", "off"))
    xla: str = _knob("auto", "cxrdrift", "'auto' (on with a GPU), 'on' or 'off'.", ("auto", "on", "off"))
    # -- attribution ------------------------------------------------------------------------
    cam_methods: tuple[str, ...] = _knob(
        ("layercam", "gradcampp", "gradcam"),
        PAPER + " §3.2 (LayerCAM, Grad-CAM++); Grad-CAM added beyond the paper (same fused pass, no extra cost)",
        "CAM methods carried through the study.", CAM_METHODS)
    cam_epochs: str = _knob("compared", PAPER + " §3.2 (epochs 8 and 19)",
                            "'compared' (early and late epoch) or 'all'.", ("compared", "all"))
    cam_samples: str = _knob("true_positives", PAPER + " §3.3",
                             "Which test samples get maps: 'true_positives' or 'all'.",
                             ("true_positives", "all"))
    cam_batch_size: int = _knob(32, "cxrdrift", "Samples per fused CAM pass (bounds memory).")
    alpha_norm: bool = _knob(
        False, ASSUMED + " (the paper's distinct InceptionV3 numbers point to the un-normalized form)",
        "Grad-CAM++: divide alpha by its spatial sum, as the authors' code and tf-keras-vis do.")
    cam_layers: tuple[str, ...] = _knob(
        ("target",), PAPER + " §3.2 (one layer per backbone, the last before pooling); more depths beyond the paper",
        "Depths the CAMs are taken at, all from the same pass: 'target' (the paper's layer, always "
        "needed), 'earlier' (the last layer before the backbone's last down-sampling, a grid twice as "
        "fine: models.EARLIER_LAYERS), or a layer name every architecture of the run has.")
    # -- drift metrics ------------------------------------------------------------------------
    threshold: float = _knob(0.5, ASSUMED + " (value lost in extraction)",
                             "Overlap IoU threshold tau on [0, 1]-normalized maps.")
    bootstrap_samples: int = _knob(1000, "cxrdrift", "Bootstrap resamples for confidence intervals.")
    ground_truth: bool = _knob(True, "cxrdrift (beyond the paper)",
                               "Score the maps against lesion masks when the dataset has them (the "
                               "synthetic radiographs do): energy and salient region on the lesion.")
    replicate_seeds: tuple[int, ...] = _knob(
        (), "cxrdrift (beyond the paper)",
        "Train every architecture again with each of these seeds (same data, same pre-trained "
        "weights); drift between seeds at one epoch is the noise floor of phase drift.")
    randomization_check: bool = _knob(True, "cxrdrift (beyond the paper; Adebayo et al. 2018)",
                                      "Drift ceiling: maps of the late checkpoint against those of a copy "
                                      "with its last stage and head re-initialized.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            choices = f.metadata["choices"]
            if choices is None:
                continue
            items = value if isinstance(value, tuple) else (value,)
            bad = [v for v in items if v not in choices]
            if bad:
                raise ConfigError(f"{f.name}: {bad[0]!r} is not one of {', '.join(map(repr, choices))}")
        if not self.run_dir:
            object.__setattr__(self, "run_dir", f"runs/{self.profile}")
        self._check_protocol()

    def _check_protocol(self) -> None:
        total = self.epochs_tl + self.epochs_ft
        if self.epochs_tl < 1 or self.epochs_ft < 1:
            raise ConfigError("epochs_tl and epochs_ft must both be at least 1")
        if not 1 <= self.early_epoch <= self.epochs_tl:
            raise ConfigError(f"early_epoch={self.early_epoch} must lie in the frozen phase, 1..{self.epochs_tl}")
        if not self.epochs_tl < self.late_epoch <= total:
            raise ConfigError(f"late_epoch={self.late_epoch} must lie in the fine-tuning phase, "
                              f"{self.epochs_tl + 1}..{total}")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold={self.threshold} must lie in (0, 1]")
        if not self.architectures:
            raise ConfigError("architectures must name at least one backbone")
        if not self.cam_methods:
            raise ConfigError("cam_methods must name at least one method")
        if "target" not in self.cam_layers or len(set(self.cam_layers)) < len(self.cam_layers):
            raise ConfigError(f"cam_layers={list(self.cam_layers)} must be distinct and include 'target' "
                              "(the paper's layer, which chapters 4-7 show)")
        if self.seed in self.replicate_seeds or len(set(self.replicate_seeds)) < len(self.replicate_seeds):
            raise ConfigError(f"replicate_seeds={list(self.replicate_seeds)} must be distinct and differ from "
                              f"seed={self.seed}: a replicate with the same seed is the same run")
        if self.finetune_images < 0:
            raise ConfigError(f"finetune_images={self.finetune_images} must be 0 (all) or a positive count")
        for name in ("image_size", "batch_size", "cam_batch_size", "synth_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive")

    # -- derived -----------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.epochs_tl + self.epochs_ft

    @property
    def compared_epochs(self) -> tuple[int, int]:
        return (self.early_epoch, self.late_epoch)

    @property
    def synthetic_data(self) -> bool:
        return not self.data_dir

    @property
    def scaled(self) -> bool:
        """True when the protocol differs from the paper's 10 + 10 epochs compared at 8 and 19."""
        return (self.epochs_tl, self.epochs_ft, self.early_epoch, self.late_epoch) != (10, 10, 8, 19)

    def cam_epoch_list(self) -> tuple[int, ...]:
        if self.cam_epochs == "all":
            return tuple(range(1, self.total_epochs + 1))
        return self.compared_epochs

    def saved_epochs(self) -> tuple[int, ...]:
        if self.save_epochs == "all":
            return tuple(range(1, self.total_epochs + 1))
        return self.cam_epoch_list()

    def path(self) -> Path:
        return Path(self.run_dir)

    # -- (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **overrides: Any) -> "RunConfig":
        """A copy with `overrides` applied, each checked against the field's type."""
        return dataclasses.replace(self, **coerce_overrides(overrides))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        return cls(**coerce_overrides(values))

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        data = json.loads(Path(path).read_text())
        return cls.from_dict(data["config"] if "config" in data else data)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}

# The fields each stage's artifacts are computed from (`cxrdrift.artifacts.stamp`): a changed field
# makes exactly the artifacts of the stages that list it stale, and those downstream through their
# input files. Training and CAM files also stamp the architecture, epoch and input files themselves,
# training also the dataset's contents (`data.DatasetIndex.identity`) in place of where it lies.
_MAPPED = ("architectures", "cam_methods", "cam_samples", "image_size", "threshold")
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "training": ("image_size", "augment", "synth_train", "synth_val", "synth_test", "synth_size",
                 "weights", "pretrain_images", "pretrain_epochs", "pretrain_lr", "pretrain_bn_momentum",
                 "pretrain_bn_epochs", "pretrain_bn_images", "pretrain_size", "pretrain_seed", "pretrain_dense",
                 "pretrain_bf16",
                 "epochs_tl", "epochs_ft", "lr_tl", "lr_ft", "finetune_images", "finetune_bf16", "bn_frozen_in_ft",
                 "head_init",
                 "batch_size", "seed",
                 "save_epochs", "early_epoch", "late_epoch", "mixed_precision", "xla", "class_map"),
    "true_positives": ("architectures", "early_epoch", "late_epoch"),
    "cams": ("cam_methods", "cam_layers", "alpha_norm", "image_size"),
    "drift": (*_MAPPED, "cam_layers", "early_epoch", "late_epoch"),
    "localization": (*_MAPPED, "cam_layers", "cam_epochs", "early_epoch", "late_epoch"),
    "randomized_maps": ("cam_methods", "image_size", "late_epoch", "alpha_norm", "seed"),
    "randomization": (*_MAPPED, "late_epoch", "alpha_norm", "seed"),
    "trajectory": (*_MAPPED, "cam_epochs", "early_epoch", "late_epoch"),
    "noise_floor": (*_MAPPED, "early_epoch", "late_epoch", "replicate_seeds"),
    "evidence_threshold_free": (*(f for f in _MAPPED if f != "threshold"), "cam_layers", "early_epoch", "late_epoch",
                                "replicate_seeds", "seed"),
    "evidence": (*_MAPPED, "cam_layers", "early_epoch", "late_epoch", "replicate_seeds", "seed"),
    "verdicts": ("bootstrap_samples", "seed", "threshold"),
}
# Fields no artifact's content depends on: where the run and its data live, how it is batched or
# cached, what the chapters compute from the artifacts, and whether an optional stage runs at all.
UNSTAMPED_FIELDS: tuple[str, ...] = ("profile", "run_dir", "data_dir", "cam_batch_size", "cache_frozen_features",
                                     "ground_truth", "randomization_check",
                                     "synth_lung_masks")  # lung masks change no image, only add files
_HINTS = typing.get_type_hints(RunConfig)


def _coerce(name: str, value: Any) -> Any:
    """Convert `value` (a Python value or a command-line string) to field `name`'s type."""
    hint = _HINTS[name]
    if typing.get_origin(hint) is tuple:
        item_type = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list of {item_type.__name__}, got {value!r}")
        return tuple(_coerce_scalar(name, item_type, v) for v in value)
    return _coerce_scalar(name, hint, value)


def _coerce_scalar(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
    elif kind in (int, float):
        exact = (int,) if kind is int else (int, float)  # 2.5 is no int; 2 is a fine float
        if isinstance(value, exact) and not isinstance(value, bool):
            return kind(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    elif kind is str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")


def coerce_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check names against RunConfig and convert values to each field's type."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        known = ", ".join(sorted(FIELDS))
        raise ConfigError(f"unknown parameter {unknown[0]!r}; RunConfig fields are: {known}")
    return {name: _coerce(name, value) for name, value in overrides.items()}


_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "profile": "paper",
        # Beyond the paper (chapter 08): maps of every checkpoint, for drift across all epochs, and
        # two more training runs with other seeds, for the noise floor and the verdicts' training noise.
        "cam_epochs": "all",
        "replicate_seeds": (1, 2),
    },
    # Synthetic radiographs, built-in pre-training, small images: the whole book on a 2-core CPU.
    # The frozen phase keeps the paper's 10 epochs compared at epoch 8: with cached backbone
    # features an epoch costs the head alone. Fine-tuning, where every epoch runs the whole
    # network, is scaled to 2 epochs, compared at the last: a third epoch cost 90-100 s of the
    # 8.4-minute cached build, and in that run (generator version 3) it left test accuracy where
    # the second had put it or lower (DenseNet201 0.930 -> 0.907, ResNet50V2 0.887 -> 0.880,
    # InceptionV3 0.897 -> 0.890) and the true-positive filter kept 77.7 % at epoch 12, 76.3 % at 13.
    "demo": {
        "profile": "demo",
        "weights": "synthetic",
        # 112 px: DenseNet201 3x3, ResNet50V2 4x4, InceptionV3 2x2 CAM grids; 128 px (4/4/2) costs
        # 1.3x the training time for one more DenseNet201 row (see notebooks/02_training.md).
        "image_size": 112,
        "synth_size": 112,
        # 1,000 training images: with 600, DenseNet201 reached 0.89 / 0.88 at the compared epochs, with
        # 1,000 0.90 / 0.90 (same pre-training, lr_ft 5e-5)
        "synth_train": 1000,
        "synth_val": 100,
        "synth_test": 300,
        # 9,600 image passes. InceptionV3 pre-trained directly on the five classes reached 0.65 test
        # accuracy with a linear probe after 3,200 passes and 0.87 after 6,400; with 6,400 passes of
        # the findings task the demo's frozen heads reached 0.79-0.89 (notebooks/02_training.md)
        "pretrain_images": 4800,
        "pretrain_epochs": 2,
        "pretrain_bn_epochs": 1,
        # 50 batches of 16 bring the moving statistics within 0.9^50 < 1 % of what they started
        # from, at a sixth of a pass over the 4,800 images (DenseNet201: about a minute less)
        "pretrain_bn_images": 800,
        # bf16 where the CPU has it, for the two backbones it speeds up: DenseNet201 pre-trained in
        # 488 s and ResNet50V2 in 267 s (float32: 782 s and 380 s, while the test suite shared the
        # machine) with the same held-out source AUC (0.992, 0.985); InceptionV3 took 184 s either
        # way, and in bf16 its source AUC fell from 0.987 to 0.972 and its frozen-phase test
        # accuracy from 0.89 to 0.84
        "pretrain_bf16": ("DenseNet201", "ResNet50V2"),
        "epochs_tl": 10,
        "epochs_ft": 2,
        "early_epoch": 8,
        "late_epoch": 12,
        # Chosen on the validation split (benchmarks/finetune_dose.py, 2 seeds, 600 images per epoch):
        # the largest of 5e-5, 1.5e-4 and 4e-4 at which every backbone stays at or above 0.88
        # validation accuracy at epoch 12 with no seed below 0.85. At 1.5e-4 ResNet50V2 fell to 0.86
        # (lowest seed 0.82), at 4e-4 to 0.78 and InceptionV3 to 0.72.
        "lr_ft": 5e-5,
        # Three seeds per backbone: the verdicts resample them (issue 21). Replicates share the
        # pre-training and the frozen features; each costs its fine-tuning and its maps.
        "replicate_seeds": (1, 2),
        # 600 of the 1,000 training images per fine-tuning epoch, so that three seeds cost at most a
        # quarter more image passes than one seed on all 1,000 (benchmarks/demo_targets.py): validation
        # accuracy at epoch 12 0.91 / 0.94 / 0.865 (DenseNet201 / ResNet50V2 / InceptionV3, mean of
        # 2 seeds; README, "The demo's levers").
        "finetune_images": 600,
        # bfloat16 fine-tuning where the CPU has it natively, for the two backbones it speeds up
        # (benchmarks/finetune_dose.py --precision bf16,fp32, 2 seeds, validation split): DenseNet201
        # 70 s a seed against 109 s and ResNet50V2 51 s against 71 s, validation accuracy at both
        # compared epochs and phase drift unchanged; InceptionV3 43 s against 50 s.
        "finetune_bf16": ("DenseNet201", "ResNet50V2"),
        # A zero head leaves a seed its data order alone (benchmarks/finetune_dose.py --head-init
        # glorot_uniform,zeros, 3 seeds, validation split, AMD EPYC avx2 avx512_bf16): the seed floor of
        # LayerCAM 1 - overlap IoU fell from 0.226 / 0.122 / 0.179 to 0.188 / 0.111 / 0.150 (DenseNet201 /
        # ResNet50V2 / InceptionV3; all 12 method x metric floors fell), validation accuracy at epoch 12
        # 0.937 / 0.89 / 0.933 against 0.93 / 0.883 / 0.94 with Keras's random head, no seed lower.
        "head_init": "zeros",
        # Batches of 16 give pre-training from scratch twice the steps at about the same cost per
        # image on a CPU.
        "batch_size": 16,
        "save_epochs": "compared",
        "bootstrap_samples": 500,
        # the paper's layer and the one before the last down-sampling (chapter 08): 3x3/4x4/2x2 and
        # 7x7/7x7/5x5 grids at 112 px, from the same pass
        "cam_layers": ("target", "earlier"),
    },
    # The smallest run that passes through every stage; what CI executes.
    "smoke": {
        "profile": "smoke",
        # Randomly initialized backbones: pre-training has tests of its own (test_models.py,
        # test_determinism.py), and tracing its step would be most of this run's training time.
        # `-p weights synthetic` pre-trains briefly:
        "weights": "none",
        # 112 px: the smallest input at which every target layer has at least a 2x2 grid
        # (DenseNet201 3x3, ResNet50V2 4x4, InceptionV3 2x2); below 107 px InceptionV3's mixed10
        # is 1x1 and every map would be degenerate. Smoke only exercises the code paths.
        "image_size": 112,
        "synth_size": 112,
        "synth_train": 120,
        "synth_val": 30,
        "synth_test": 40,
        "pretrain_images": 96,
        "pretrain_epochs": 1,
        "pretrain_bn_epochs": 1,
        "epochs_tl": 2,
        "epochs_ft": 1,
        "early_epoch": 1,
        "late_epoch": 3,
        "batch_size": 20,
        "save_epochs": "compared",
        "cam_samples": "all",
        # every epoch's maps (3 here), so CI runs chapter 08's drift across epochs end to end
        "cam_epochs": "all",
        "bootstrap_samples": 50,
        # both depths, so CI runs the multi-layer maps end to end
        "cam_layers": ("target", "earlier"),
    },
}


def profile(name: str, **overrides: Any) -> RunConfig:
    """The named profile's configuration with `overrides` (field name -> value) applied."""
    if name not in _PROFILE_DEFAULTS:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    values = dict(_PROFILE_DEFAULTS[name])
    values.update(coerce_overrides(overrides))
    if name == "paper" and not values.get("data_dir"):
        raise ConfigError("the paper profile needs the real dataset: pass --data-dir DIR "
                          "(or -p data_dir DIR)")
    return RunConfig(**coerce_overrides(values))


def assumptions() -> list[dict[str, str]]:
    """Every field whose paper-profile default is our assumption, for the protocol page."""
    return [
        {"field": f.name, "default": json.dumps(_jsonable(f.default)), "source": f.metadata["source"],
         "help": f.metadata["help"]}
        for f in dataclasses.fields(RunConfig) if f.metadata["source"].startswith("assumption")
    ]


def describe_fields() -> list[dict[str, str]]:
    """Name, type, default, source and help of every field (README, `--help`)."""
    rows = []
    for f in dataclasses.fields(RunConfig):
        hint = _HINTS[f.name]
        type_name = ("list of " + typing.get_args(hint)[0].__name__) if typing.get_origin(hint) is tuple \
            else hint.__name__
        rows.append({"field": f.name, "type": type_name, "default": json.dumps(_jsonable(f.default)),
                     "source": f.metadata["source"], "help": f.metadata["help"]})
    return rows


__all__ = ["RunConfig", "ConfigError", "profile", "assumptions", "describe_fields", "coerce_overrides",
           "ARCHITECTURES", "CAM_METHODS", "PROFILES", "FIELDS"]
