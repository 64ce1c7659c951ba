"""What a run was computed with: the software versions, the CPU and its vector extensions, the GPU.

Both change the numbers (bfloat16 pre-training on CPUs that compute it natively, float32 elsewhere;
another TensorFlow, other kernels) and the times. `environment()` is recorded in every run's
config.json, the protocol page lists it (`environment_markdown`) and every chapter's banner names
the machine in one phrase (`machine_class`).
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

CPUINFO = Path("/proc/cpuinfo")
# The vector extensions that decide which kernels TensorFlow and oneDNN run: x86 flags of
# /proc/cpuinfo, then Arm "Features"; listed in this order when the CPU has them.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
                     "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
                     "asimd", "sve", "sve2", "bf16", "i8mm")
NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
# The stamp `make setup` writes into the venv: it names the lock the venv was installed from.
INSTALL_STAMP = ".installed"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (x86 "flags", Arm "Features" in /proc/cpuinfo); empty where it
    cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    return frozenset(flag for line in text.splitlines() if line.startswith(("flags", "Features"))
                     for flag in line.partition(":")[2].split())


def cpu(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's model, the cores this process may use, and its vector extensions."""
    model = ""
    try:
        model = next((line.partition(":")[2].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith(("model name", "Model"))), "")
    except OSError:
        pass
    flags = cpu_flags(cpuinfo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.processor() or platform.machine(), "cores": cores,
            "vector_extensions": [flag for flag in VECTOR_EXTENSIONS if flag in flags]}


def gpus() -> list[dict[str, str]]:
    """Every GPU TensorFlow sees: its name and compute capability."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        found.append({"name": details.get("device_name", device.name),
                      "compute_capability": ".".join(map(str, capability)) if capability else ""})
    return found


def _installed_from() -> str:
    stamp = Path(sys.prefix) / INSTALL_STAMP
    text = stamp.read_text().strip() if stamp.is_file() else ""
    return text or "not installed by `make setup` from a lock"


def environment(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The software and machine of this process, for config.json (imports TensorFlow)."""
    import keras
    import numpy
    import tensorflow as tf

    record: dict[str, Any] = {
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": numpy.__version__, "cxrdrift": metadata.version("cxrdrift"),
        "installed_from": _installed_from(), "platform": platform.platform(), "cpu": cpu(cpuinfo),
        "gpus": gpus(),
    }
    if record["gpus"]:
        build = tf.sysconfig.get_build_info()
        record["cuda"] = {"cuda": build.get("cuda_version", ""), "cudnn": build.get("cudnn_version", "")}
    return record


def machine_class(record: Mapping[str, Any]) -> str:
    """The machine in one phrase, as the time targets class them (e.g. "2-core CPU with AVX-512
    and native bfloat16", "NVIDIA H200 GPU")."""
    found = record.get("gpus") or []
    if found:
        names = " + ".join(sorted({gpu["name"] for gpu in found}))
        return f"{names} GPU" if len(found) == 1 else f"{len(found)} × {names} GPUs"
    processor = record.get("cpu") or {}
    extensions = set(processor.get("vector_extensions", []))
    cores = f"{processor['cores']}-core" if processor.get("cores") else "a"
    if extensions & NATIVE_BF16:
        return f"{cores} CPU with AVX-512 and native bfloat16"
    if "avx512f" in extensions:
        return f"{cores} CPU with AVX-512, without native bfloat16"
    if "avx2" in extensions:
        return f"{cores} CPU with AVX2, without AVX-512"
    if "asimd" in extensions:
        return f"{cores} Arm CPU" + (" with bfloat16" if "bf16" in extensions else "")
    return f"{cores} CPU without AVX2"


def environment_markdown(record: Mapping[str, Any] | None) -> str:
    """A Markdown table of what the run recorded (or a sentence when it recorded nothing)."""
    if not record:
        return "This build's run directory recorded no environment (no chapter has run yet)."
    processor = record.get("cpu") or {}
    rows = [
        ("Machine", machine_class(record)),
        ("CPU", f"{processor.get('model', '')}, {processor.get('cores', '?')} cores"),
        ("Vector extensions", ", ".join(f"`{flag}`" for flag in processor.get("vector_extensions", [])) or "none"),
        ("GPU", "; ".join(f"{gpu['name']} (compute capability {gpu['compute_capability']})"
                          for gpu in record.get("gpus") or []) or "none"),
    ]
    if record.get("cuda"):
        rows.append(("CUDA, cuDNN (TensorFlow's build)", f"{record['cuda']['cuda']}, {record['cuda']['cudnn']}"))
    rows += [("Python", record.get("python", "")), ("TensorFlow", record.get("tensorflow", "")),
             ("Keras", record.get("keras", "")), ("NumPy", record.get("numpy", "")),
             ("cxrdrift", record.get("cxrdrift", "")), ("Installed from", f"`{record.get('installed_from', '')}`"),
             ("Platform", f"`{record.get('platform', '')}`")]
    return "\n".join(["| | this build |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


__all__ = ["VECTOR_EXTENSIONS", "NATIVE_BF16", "cpu_flags", "cpu", "gpus", "environment", "machine_class",
           "environment_markdown"]
