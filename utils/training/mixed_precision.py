"""Which number format a model computes in while it trains: float32, or bfloat16 or float16 with float32 weights.

CPUs with bfloat16 instructions (AVX512_BF16, AMX-BF16: recent AMD EPYC and Intel Xeon) run the
compact ResNet's convolutions faster in bfloat16 (docs/experiments/does-bfloat16-pay.md);
CPUs without them emulate it and run slower. So the cpu profile asks for "auto":

    precision.resolve("auto")          # "mixed_bfloat16" on such a CPU under TensorFlow, else "float32"
    with precision.policy("mixed_bfloat16"):
        model = models.build_model(spec)   # layers compute in bfloat16, variables stay float32

On a GPU "auto" follows the GPU's compute capability (`for_gpu`): mixed_float16 on 7.x (T4, V100: tensor cores
without bfloat16; Keras scales the loss), mixed_bfloat16 from 8.0 (A100, L4, H100), float32 below 7.0 (P100). The
models' output softmax stays float32 under every policy.

Only training uses it: `recipe.train_recipe` hands back (and 05 saves, scores and ships) a float32
copy of the trained weights, so predictions never depend on the machine that trained the model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras

from utils.training import devices

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# CPU flags (Linux /proc/cpuinfo) of instructions that compute bfloat16 dot products natively.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def check(value, parameter: str = "precision") -> str:
    """The value, or ValueError (one sentence naming the parameter and the choices)."""
    if value not in PRECISIONS:
        raise ValueError(f"{parameter} must be one of {', '.join(PRECISIONS)} (got {value!r}).")
    return value


def cpu_computes_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU advertises native bfloat16 arithmetic (False where that cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)
    return False


def for_gpu(capability: tuple[int, int] | None) -> str:
    """The number format "auto" trains in on a GPU of compute capability (major, minor): mixed_bfloat16 from 8.0 (A100,
    L4, H100: tensor cores with bfloat16), mixed_float16 on 7.x (T4, V100: tensor cores for float16 only), float32
    below 7.0 (P100: no tensor cores) or when the capability is unknown."""
    if capability is None:
        return "float32"
    major = int(capability[0])
    if major >= 8:
        return "mixed_bfloat16"
    if major == 7:
        return "mixed_float16"
    return "float32"


def resolve(value: str, cpuinfo: Path = CPUINFO, gpus: list | None = None) -> str:
    """ "float32", "mixed_bfloat16" or "mixed_float16". "auto" on a GPU takes `for_gpu` of the least capable visible GPU
    (`gpus`: `devices.visible_gpus()` of Keras' backend unless given); without one, bfloat16 only where it was measured
    faster: the TensorFlow backend on a CPU with native bfloat16."""
    check(value)
    if value != "auto":
        return value
    if gpus is None:
        gpus = devices.visible_gpus()
    if gpus:
        capabilities = [gpu.compute_capability for gpu in gpus]
        return for_gpu(None if None in capabilities else min(capabilities))
    if keras.backend.backend() != "tensorflow" or not cpu_computes_bfloat16(cpuinfo):
        return "float32"
    return "mixed_bfloat16"


@contextlib.contextmanager
def policy(value: str):
    """Layers built inside compute in `value` (resolved first); the global policy is restored after."""
    resolved = resolve(value)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved)
    try:
        yield resolved
    finally:
        keras.config.set_dtype_policy(previous)
