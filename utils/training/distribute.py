"""Data-parallel training on every visible accelerator, with each backend's own API.

    distribution = distribute.choose(DISTRIBUTE, BATCH_SCALING)
    with distribution.scope():
        model = models.build_model(spec)
    train.train_phases(model, train_data, validation_data, phases, distribution=distribution)

`DISTRIBUTE: auto` replicates the model on every visible device and splits each batch between them:

- TensorFlow: `tf.distribute.MirroredStrategy` over every visible GPU. Without a GPU it takes the
  logical CPU devices when there are several (`tf.config.set_logical_device_configuration`), which
  is how the tests get two replicas on a CPU; a plain CPU has one, so nothing changes there.
- JAX: `keras.distribution.DataParallel` over `jax.devices()` (several CPU devices with
  `XLA_FLAGS=--xla_force_host_platform_device_count=N`).
- PyTorch: Keras' torch backend has no built-in data parallelism, so training runs on one device;
  `choose` says so in one printed sentence, and the run records it.

One device, or `DISTRIBUTE: none`, is the single-device training exactly: no strategy and no scope.

`BATCH_SCALING` says what more replicas change (docs/contracts.md, Backends):

- `linear`: every replica keeps the profile's batch size, so the global batch size and the learning
  rate are both multiplied by the replica count (the linear scaling rule of Goyal et al., 2017), and
  a weight average's momentum m becomes m ** replicas: each step then sees `replicas` times as many
  images, so the average keeps its horizon in images (with 0.999 unscaled and four
  replicas, the averaged weights that validation sees would still be two-thirds the initial ones
  after five epochs of the cpu profile's data: validation accuracy stays at chance meanwhile);
- `none`: the global batch size and the learning rate stay as the profile says; each replica gets
  an equal share of every batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

MODES = ("auto", "none")
BATCH_SCALINGS = ("linear", "none")
TORCH_NOTE = "Keras' torch backend has no built-in data parallelism, so training runs on one device."


@dataclass
class Distribution:
    """How training is spread over devices: the replica count, the strategy and what it changes."""

    mode: str = "none"
    backend: str = "tensorflow"
    replicas: int = 1
    batch_scaling: str = "linear"
    devices: list = field(default_factory=list)
    strategy: object = None
    note: str = "one device"

    def scope(self):
        """The strategy's scope (models and optimizers created in it are replicated); a plain
        context that does nothing on one device."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def scale_batch_size(self, batch_size: int) -> int:
        """The global batch size for a profile's (per-replica) batch size."""
        return int(batch_size) * self.replicas if self.batch_scaling == "linear" else int(batch_size)

    def scale_learning_rate(self, learning_rate: float) -> float:
        """The learning rate for the global batch size (unchanged on one device)."""
        return float(learning_rate) * self.replicas if self.batch_scaling == "linear" else float(learning_rate)

    def scale_ema_momentum(self, momentum: float | None) -> float | None:
        """The weight average's momentum per global step: m ** replicas under linear scaling, so the
        average spans as many images as on one device (None, no average, stays None)."""
        if momentum is None or self.batch_scaling != "linear":
            return momentum
        return float(momentum) ** self.replicas

    def scale_phase(self, phase):
        """A copy of a `phases.Phase` with the global batch size, learning rate and weight-average momentum."""
        if self.replicas == 1:
            return phase
        return dataclasses.replace(
            phase,
            batch_size=self.scale_batch_size(phase.batch_size),
            learning_rate=self.scale_learning_rate(phase.learning_rate),
            ema_momentum=self.scale_ema_momentum(phase.ema_momentum),
        )

    def record(self) -> dict:
        """What the metrics JSON records about the distribution (plain values only)."""
        return {
            "distribute": self.mode,
            "replicas": self.replicas,
            "strategy": type(self.strategy).__name__ if self.strategy is not None else None,
            "devices": list(self.devices),
            "batch_scaling": self.batch_scaling,
            "note": self.note,
        }


def check_mode(value, parameter: str = "DISTRIBUTE") -> str:
    """Returns a DISTRIBUTE value, or raises ValueError with one sentence naming the parameter and the choices."""
    if value not in MODES:
        raise ValueError(f"{parameter} must be 'auto' (train on every visible accelerator) or 'none' (one device), got {value!r}.")
    return value


def check_batch_scaling(value, parameter: str = "BATCH_SCALING") -> str:
    """Returns a BATCH_SCALING value, or raises ValueError with one sentence naming the parameter and the choices."""
    if value not in BATCH_SCALINGS:
        raise ValueError(
            f"{parameter} must be 'linear' (batch size and learning rate times the replica count) or 'none' (unchanged), got {value!r}."
        )
    return value


def _tensorflow_devices() -> list[str]:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def _jax_devices() -> list:
    import jax

    return list(jax.devices())


def choose(mode: str = "none", batch_scaling: str = "linear", backend: str | None = None, verbose: bool = True) -> Distribution:
    """The distribution for `mode` ("auto" or "none") on the current Keras backend; prints one line."""
    check_mode(mode)
    check_batch_scaling(batch_scaling)
    if backend is None:
        import keras

        backend = keras.backend.backend()
    distribution = Distribution(mode=mode, backend=backend, batch_scaling=batch_scaling)
    if mode == "none":
        distribution.note = "DISTRIBUTE none: training runs on one device."
    elif backend == "torch":
        import torch

        distribution.note = TORCH_NOTE
        distribution.devices = ["cuda:0" if torch.cuda.is_available() else "cpu"]  # Where Keras' torch backend trains.
    elif backend == "tensorflow":
        devices = _tensorflow_devices()
        if len(devices) > 1:
            import tensorflow as tf

            distribution.strategy = tf.distribute.MirroredStrategy(devices)
            distribution.replicas = int(distribution.strategy.num_replicas_in_sync)
        distribution.devices = devices
    elif backend == "jax":
        devices = _jax_devices()
        if len(devices) > 1:
            import keras

            distribution.strategy = keras.distribution.DataParallel(devices=devices)
            distribution.replicas = len(devices)
        distribution.devices = [str(device) for device in devices]
    if distribution.replicas > 1:
        scaling = (
            "batch size and learning rate times the replica count"
            if batch_scaling == "linear"
            else "the profile's batch size and learning rate, split over the replicas"
        )
        distribution.note = (
            f"Data-parallel training with {type(distribution.strategy).__name__} on {distribution.replicas} devices ({scaling})."
        )
    elif mode == "auto" and backend != "torch":
        distribution.note = "One visible device: training runs on it without a distribution strategy."
    if verbose:
        print(distribution.note, flush=True)
    return distribution
