"""Which device a Keras backend trains on: the GPUs it sees (model, memory, compute capability) and the CUDA and
cuDNN versions its build expects, or the CPU.

    gpus = devices.visible_gpus("tensorflow")       # [Gpu(name="NVIDIA A100-SXM4-40GB", memory_gib=40.0, compute_capability=(8, 0))]
    device = devices.describe("tensorflow")         # what run.json records: kind, GPUs, build, CPU, one-line summary
    devices.no_gpu_sentence(device)                 # why a GPU profile stops when the backend sees none

A GPU that `nvidia-smi` lists but the backend does not see is the classic sign of a TensorFlow whose CUDA build does not
match the runtime's driver (what happens when another TensorFlow is installed over Colab's or Kaggle's); the sentence
says so, with the build's versions, because TensorFlow itself says it only in a log line.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

BACKEND_NAMES = {"tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX"}
NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU as a backend reports it; memory in GiB and compute capability (major, minor) where known."""

    name: str
    memory_gib: float | None = None
    compute_capability: tuple[int, int] | None = None

    def describe(self) -> str:
        details = []
        if self.memory_gib:
            details.append(f"{self.memory_gib:.0f} GiB")
        if self.compute_capability:
            details.append("compute capability {}.{}".format(*self.compute_capability))
        return f"{self.name} ({', '.join(details)})" if details else self.name


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("AMD EPYC ...", "Intel(R) Xeon(R) ..."), else the architecture."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def parse_capability(value) -> tuple[int, int] | None:
    """(major, minor) from what backends report: a tuple (TensorFlow, PyTorch) or a string "8.6" (JAX, nvidia-smi)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        major, _, minor = value.strip().partition(".")
        try:
            return int(major), int(minor or 0)
        except ValueError:
            return None
    try:
        major, minor = value
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def nvidia_smi_gpus() -> list[Gpu]:
    """The GPUs the driver lists (`nvidia-smi`), whatever the backend sees; [] without the tool or a driver."""
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return []
    try:
        result = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Rows "name, memory MiB, compute capability" of `nvidia-smi --query-gpu=name,memory.total,compute_cap` as Gpus."""
    gpus = []
    for line in text.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if not fields or not fields[0]:
            continue
        try:
            memory = float(fields[1]) / 1024 if len(fields) > 1 else None
        except ValueError:
            memory = None
        gpus.append(Gpu(fields[0], memory, parse_capability(fields[2]) if len(fields) > 2 else None))
    return gpus


def _tensorflow_gpus() -> list[Gpu]:
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU")
    listed = nvidia_smi_gpus() if physical else []
    gpus = []
    for index, device in enumerate(physical):
        details = tf.config.experimental.get_device_details(device) or {}
        # TensorFlow does not report a GPU's memory before it allocates; nvidia-smi lists the same GPUs in the same order.
        memory = listed[index].memory_gib if index < len(listed) else None
        gpus.append(Gpu(details.get("device_name", device.name), memory, parse_capability(details.get("compute_capability"))))
    return gpus


def _torch_gpus() -> list[Gpu]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        gpus.append(Gpu(properties.name, properties.total_memory / 2**30, (int(properties.major), int(properties.minor))))
    return gpus


def _jax_gpus() -> list[Gpu]:
    import jax

    try:
        found = jax.devices("gpu")
    except RuntimeError:  # JAX raises when the platform has no such device.
        return []
    gpus = []
    for device in found:
        try:
            memory = (device.memory_stats() or {}).get("bytes_limit")
        except Exception:  # Not every device kind reports memory statistics.
            memory = None
        gpus.append(
            Gpu(
                getattr(device, "device_kind", str(device)),
                memory / 2**30 if memory else None,
                parse_capability(getattr(device, "compute_capability", None)),
            )
        )
    return gpus


_PROBES = {"tensorflow": _tensorflow_gpus, "torch": _torch_gpus, "jax": _jax_gpus}


def current_backend() -> str:
    """The Keras backend this process trains with (imports Keras)."""
    import keras

    return keras.backend.backend()


def visible_gpus(backend: str | None = None) -> list[Gpu]:
    """The GPUs that `backend` (default: Keras' current backend) trains on, in its order; [] on a CPU."""
    backend = backend or current_backend()
    if backend not in _PROBES:
        raise ValueError(f"backend {backend!r} is unknown; choose one of {', '.join(_PROBES)}.")
    return _PROBES[backend]()


def build_info(backend: str) -> dict:
    """The backend's version and the CUDA and cuDNN versions its build expects (None where it was built without them)."""
    module = importlib.import_module(backend)
    info = {"backend": backend, "version": getattr(module, "__version__", None), "cuda": None, "cudnn": None}
    if backend == "tensorflow":
        build = dict(module.sysconfig.get_build_info())
        if build.get("is_cuda_build"):
            info.update(cuda=build.get("cuda_version"), cudnn=build.get("cudnn_version"))
    elif backend == "torch":
        cudnn = module.backends.cudnn.version() if module.version.cuda else None
        info.update(cuda=module.version.cuda, cudnn=str(cudnn) if cudnn else None)
    return info


def describe(backend: str | None = None) -> dict:
    """What run.json and the report record of the device: {"kind": "gpu"|"cpu", "gpus": [...], "build": ..., "cpu": ...,
    "summary": one line}. `backend` defaults to Keras' current backend."""
    backend = backend or current_backend()
    gpus = visible_gpus(backend)
    device = {
        "kind": "gpu" if gpus else "cpu",
        "gpus": [dataclasses.asdict(gpu) for gpu in gpus],
        "build": build_info(backend),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
        "driver_gpus": [] if gpus else [dataclasses.asdict(gpu) for gpu in nvidia_smi_gpus()],
    }
    device["summary"] = summary(device)
    return device


def summary(device: dict) -> str:
    """One line: "2 × NVIDIA A100-SXM4-40GB (40 GiB, compute capability 8.0), TensorFlow 2.20.0" or "CPU: AMD EPYC, 2 cores"."""
    build = device.get("build") or {}
    backend = f"{BACKEND_NAMES.get(build.get('backend'), build.get('backend'))} {build.get('version')}" if build else ""
    gpus = [Gpu(gpu["name"], gpu.get("memory_gib"), parse_capability(gpu.get("compute_capability"))) for gpu in device.get("gpus") or []]
    if not gpus:
        return f"CPU: {device.get('cpu')}" + (f", {backend}" if backend else "")
    names = [gpu.describe() for gpu in gpus]
    if len(set(names)) == 1:
        text = f"{len(names)} × {names[0]}"
    else:
        text = " + ".join(names)
    return text + (f", {backend}" if backend else "")


def no_gpu_sentence(device: dict, profile: str = "gpu") -> str:
    """One sentence: why a GPU profile stops on `device` (as `describe` returns it, seeing no GPU), the build's CUDA and
    cuDNN versions, and the switch that runs it on the CPU anyway."""
    build = device.get("build") or {}
    name = f"{BACKEND_NAMES.get(build.get('backend'), build.get('backend'))} {build.get('version')}"
    if build.get("cuda"):
        built_for = f"built for CUDA {build['cuda']}" + (f" and cuDNN {build['cudnn']}" if build.get("cudnn") else "")
    else:
        built_for = "built without CUDA"
    listed = device.get("driver_gpus") or []
    if listed:
        first = Gpu(listed[0]["name"], listed[0].get("memory_gib"), parse_capability(listed[0].get("compute_capability")))
        cause = (
            f"the driver lists {first.describe()}, "
            f"so this {name} does not match the runtime's CUDA (keep the runtime's own TensorFlow: install the suite with "
            "`pip install -e .`, never a requirements file that replaces it)"
        )
    else:
        cause = (
            "the likely causes are a runtime without a GPU (Colab: Runtime > Change runtime type > GPU; Kaggle: Settings > "
            "Accelerator > GPU; Slurm: --gres=gpu:1) or a TensorFlow whose CUDA build does not match the runtime's"
        )
    return f"the {profile} profile needs a GPU, but {name} ({built_for}) sees none: {cause}; add --allow-cpu to run it on the CPU anyway."
