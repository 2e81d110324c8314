"""One training recipe as data: which model, which augmentation policy, which optimizer and budget.

Notebooks 04 (the augmentation study) and 05 (the final fine-tune) train many models that differ
in one or two settings; a `Recipe` holds every setting, `train_recipe` turns it into a model,
phases and an augmented input pipeline, and trains with per-epoch checkpoints (resumable).

    recipe = Recipe(model="baseline", policy="robust", optimizer="adamw", epochs=10)
    model, spec, history, phase_starts = train_recipe(recipe, split, checkpoint_dir, seed=42)

`model` is "baseline" (the hand-made CNN, widths in `filters`), "resnet" (a compact ResNet, `widths`
and `blocks` per stage), "convnext" (a compact ConvNeXt, the same two) or a keras.applications
backbone name (see `models.BACKBONES`) with the report's head. With ImageNet weights the report's
two phases run (head on a frozen backbone at batch `head_batch_size`, then fine-tuning with the
first `frozen_layers` (or the first `frozen_fraction`) of the backbone layers frozen at batch
`batch_size`); without them the whole network trains in one phase.

`consistency_weight` > 0 trains on two views of every image (the first as `consistency_view` says: "geometry",
the policy's flips, rotation, shift and zoom only, or "policy", a second draw of the whole policy) with a
Jensen-Shannon consistency term of that weight (`utils.augment.consistency`). `batch_size` still counts images, so a
step holds twice as many rows and costs about twice the time.

`progressive_sizes` trains the first epochs on smaller images (progressive resizing): [[64, 20]] trains epochs 1-20 on
smaller versions of the augmented batches and the rest at `image_size`, with one optimizer and one schedule throughout.
`progressive_mode` "resize" downscales each image whole (a cell then looks smaller than at test time); "crop" cuts a
64-px window at a random place of each image, so that a cell keeps the size it has at test time.
The compact nets are fully convolutional, so the same weights serve every size; the returned model takes 96-px images.

`curve_every` > 0 scores the model every that many epochs on a small fixed corrupted set (`utils.evaluation.curve`):
the history rows then hold `training_minutes` and `corrupted_probe_accuracy`, the curve of accuracy against training
time. The probes are not counted as training time.

`stem` "whitened" starts the compact ResNet's first convolution from the training images' own patches (their
strongest decorrelating directions, `utils.models.whitening`) instead of random weights, as the CIFAR-10 speedruns do;
it goes on training with the rest.

`precision` "mixed_bfloat16" trains in bfloat16 with float32 weights; "auto" does so only on a CPU that computes
bfloat16 natively (`utils.training.mixed_precision`). Either way `train_recipe` returns a float32 model with the trained weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from utils import augment, models

# Models of the suite's own that always train from scratch, in one phase.
from utils.augment import consistency
from utils.evaluation import curve
from utils.models import registry, whitening
from utils.training import finetune, mixed_precision
from utils.training import phases as phases_module  # `phases` here is the function below that lists a recipe's phases

SCRATCH_MODELS = registry.SCRATCH_KINDS
# "learned": the stem starts random, as every other layer; "whitened": from the training patches (`utils.models.whitening`).
STEMS = ("learned", "whitened")


# The model settings a recipe starts from are the registered kinds' defaults (`utils.models.registry`): the
# baseline's filters and dense layer, the compact ResNet's stages (which a compact ConvNeXt recipe shares unless it
# sets its own), the transfer head, and the dropout and BatchNorm momentum that every kind shares.
_BASELINE = registry.defaults("baseline")
_RESNET = registry.defaults("resnet")
_TRANSFER = registry.defaults("transfer")


@dataclass
class Recipe:
    model: str = "baseline"
    image_size: int = models.INPUT_SIZE
    weights: str | None = None
    policy: object = "none"
    optimizer: str = "adamw"
    epochs: int = 10
    head_batch_size: int = 64
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    weight_decay: float | None = None
    frozen_fraction: float = 0.24
    frozen_layers: int | None = None
    patience: int | None = 5
    reduce_lr_patience: int | None = 2
    label_smoothing: float = 0.0
    scratch_bn_momentum: float = registry.BN_MOMENTUM
    filters: list = field(default_factory=lambda: list(_BASELINE["filters"]))
    dense_units: int = _BASELINE["dense_units"]
    widths: list = field(default_factory=lambda: list(_RESNET["widths"]))
    blocks: list = field(default_factory=lambda: list(_RESNET["blocks"]))
    head_units: int = _TRANSFER["head_units"]
    dropout: float = registry.DROPOUT
    input_norm: str = registry.INPUT_NORM
    schedule: str = "plateau"
    warmup_epochs: int = 0
    ema_momentum: float | None = None
    consistency_weight: float = 0.0
    consistency_view: str = "geometry"
    precision: str = "float32"
    progressive_sizes: list = field(default_factory=list)
    progressive_mode: str = "resize"
    curve_every: int = 0
    stem: str = "learned"
    # A stratified subset of this many training images (0 = all): a study screens on part of the data.
    train_images: int = 0

    def __post_init__(self):
        registry.check_model(self.model)
        self.weights = self.weights or None
        augment.resolve_policy(self.policy)
        phases_module.make_optimizer(self.optimizer)
        if self.input_norm not in models.INPUT_NORMS:
            raise ValueError(f"Unknown input_norm {self.input_norm!r}; choose one of {', '.join(models.INPUT_NORMS)}.")
        consistency.check_first_view(self.consistency_view)
        mixed_precision.check(self.precision, "precision")
        if consistency.check_weight(self.consistency_weight):
            consistency.check_policy(self.policy)
        self.progressive_sizes = check_progressive_sizes(self.progressive_sizes, self)
        if isinstance(self.curve_every, bool) or not isinstance(self.curve_every, int) or self.curve_every < 0:
            raise ValueError(f"curve_every must be 0 (no curve) or a number of epochs (got {self.curve_every!r}).")
        if self.progressive_mode not in augment.PROGRESSIVE_MODES:
            raise ValueError(f"progressive_mode must be one of {', '.join(augment.PROGRESSIVE_MODES)} (got {self.progressive_mode!r}).")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)} (got {self.stem!r}).")
        if isinstance(self.train_images, bool) or not isinstance(self.train_images, int) or self.train_images < 0:
            raise ValueError(f"train_images must be 0 (every training image) or a number of images (got {self.train_images!r}).")
        if self.stem == "whitened" and self.model != "resnet":
            raise ValueError(
                f"stem 'whitened' sets the compact ResNet's first convolution; model {self.model!r} has none: use model='resnet'."
            )
        # A phase checks the schedule, warm-up and EMA momentum with one sentence each.
        phases_module.Phase("train", self.epochs, schedule=self.schedule, warmup_epochs=self.warmup_epochs, ema_momentum=self.ema_momentum)

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def from_settings(settings: dict | None, parameter: str = "recipe", **changes) -> Recipe:
    """A `Recipe` from a mapping of its fields (a notebook's recipe mapping, such as a profile's `FINAL_RECIPE`), with
    `changes` on top (the fields a sweep axis sets, such as `model=SWEEP_BACKBONES[0]`); a bad mapping raises ValueError
    in one sentence naming `parameter`."""
    settings = {**(settings or {}), **changes}
    names = [item.name for item in dataclasses.fields(Recipe)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ValueError(f"{parameter}: {', '.join(unknown)} is not a field of the recipe; the fields are {', '.join(names)}.")
    try:
        return Recipe(**settings)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{parameter}: {error}") from None


def check_progressive_sizes(progressive_sizes, recipe: Recipe) -> list[list[int]]:
    """`progressive_sizes` as [[size, epochs], ...], checked: the leading epochs' smaller sizes of a compact net."""
    if not progressive_sizes:
        return []
    if recipe.model not in models.SCRATCH_NETS:
        raise ValueError(f"progressive_sizes needs a fully convolutional net ('resnet' or 'convnext'), not {recipe.model!r}.")
    if recipe.consistency_weight:
        raise ValueError("progressive_sizes and consistency_weight cannot be combined; set one of them.")
    pairs = []
    for pair in progressive_sizes:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
            raise ValueError(f"progressive_sizes takes [size, epochs] pairs of integers, such as [[64, 20]] (got {pair!r}).")
        size, epochs = pair
        if not 32 <= size <= recipe.image_size or epochs < 1:
            raise ValueError(
                f"progressive_sizes {pair}: each size between 32 and image_size {recipe.image_size} px, each count of epochs 1 or more."
            )
        pairs.append([size, epochs])
    if sum(epochs for _, epochs in pairs) >= recipe.epochs:
        raise ValueError(
            f"progressive_sizes {pairs} covers {sum(e for _, e in pairs)} of {recipe.epochs} epochs; leave the last epochs at "
            f"image_size: train half of them small ([[{pairs[0][0]}, {recipe.epochs // 2}]]) or none ([])."
        )
    return pairs


def epoch_sizes(recipe: Recipe) -> list[int]:
    """The image side length of every epoch of the recipe."""
    sizes = [size for size, epochs in recipe.progressive_sizes for _ in range(epochs)]
    return sizes + [recipe.image_size] * (recipe.epochs - len(sizes))


def build(recipe: Recipe, seed: int | None = None, any_input_size: bool = False):
    """The recipe's model (with its weights source) and the spec that rebuilds it."""
    kind = registry.kind_of_model(recipe.model)
    settings = {
        "backbone": recipe.model,
        "head_units": recipe.head_units,
        "dropout": recipe.dropout,
        "filters": tuple(recipe.filters),
        "dense_units": recipe.dense_units,
        "bn_momentum": recipe.scratch_bn_momentum,
        "widths": tuple(recipe.widths),
        "blocks": tuple(recipe.blocks),
        "input_norm": recipe.input_norm,
    }
    # Of the recipe's settings the spec holds those that the kind has (the working resolution goes to every kind).
    spec = models.model_spec(
        kind=kind,
        image_size=recipe.image_size,
        **{key: value for key, value in settings.items() if key in registry.kind(kind).defaults},
    )
    if kind != "transfer":
        return models.build_model(spec, seed=seed, any_input_size=any_input_size), spec
    model = models.build_model(spec, weights=recipe.weights, seed=seed)
    if recipe.weights is None:
        finetune.set_batchnorm_momentum(model, recipe.scratch_bn_momentum)
    return model, spec


def phases(recipe: Recipe, model) -> list[phases_module.Phase]:
    """The report's phases for a pretrained backbone, or one phase that trains everything."""
    common = dict(
        optimizer=recipe.optimizer,
        weight_decay=recipe.weight_decay,
        patience=recipe.patience,
        reduce_lr_patience=recipe.reduce_lr_patience,
        schedule=recipe.schedule,
        warmup_epochs=recipe.warmup_epochs,
        ema_momentum=recipe.ema_momentum,
    )
    if recipe.model in SCRATCH_MODELS or recipe.weights is None:
        return [
            phases_module.Phase(
                "train", recipe.epochs, batch_size=recipe.batch_size, learning_rate=recipe.learning_rate, trainable="all", **common
            )
        ]
    frozen_layers = recipe.frozen_layers
    if frozen_layers is None:
        frozen_layers = int(round(recipe.frozen_fraction * len(finetune.get_backbone(model).layers)))
    return [
        phases_module.Phase(
            "transfer", recipe.epochs, batch_size=recipe.head_batch_size, learning_rate=recipe.learning_rate, trainable="head", **common
        ),
        phases_module.Phase(
            "fine_tune",
            recipe.epochs,
            batch_size=recipe.batch_size,
            learning_rate=recipe.fine_tune_learning_rate,
            trainable="fine_tune",
            frozen_layers=frozen_layers,
            freeze_batchnorm=True,
            **common,
        ),
    ]


def start_stem(recipe: Recipe, model, images, seed: int = 0) -> None:
    """Sets the model's stem as the recipe starts it: whitened from `images` (raw training images), or left random."""
    if recipe.stem == "whitened":
        whitening.whiten_stem(model, images, seed=seed)


def train_recipe(recipe: Recipe, split, checkpoint_dir=None, seed: int = 42, *, verbose: int = 2, distribution=None, callbacks=()):
    """Builds and trains the recipe's model on `split` (a `data.TrainingSplit`); every batch is
    augmented on the fly with the recipe's policy. Returns (model, spec, history rows, phase start
    epochs). With `checkpoint_dir`, an interrupted training resumes from its last epoch. With a
    `utils.training.distribute.Distribution`, the model is built in its scope and trains data-parallel.
    `callbacks` (Keras callbacks, e.g. 04's screening) join the training's own."""
    phases_module.set_seeds(seed)
    if recipe.train_images:
        split = split.stratified_subset(recipe.train_images, seed=seed)
        print(f"Training on a stratified subset: {split.describe()}.", flush=True)
    with (
        distribution.scope() if distribution is not None else contextlib.nullcontext(),
        mixed_precision.policy(recipe.precision) as computed_in,
    ):
        # Progressive resizing trains a model that takes any image size; the one returned takes the spec's size.
        model, spec = build(recipe, seed=seed, any_input_size=bool(recipe.progressive_sizes))
    start_stem(recipe, model, split.x_train, seed=seed)
    spec["recipe"] = {key: value for key, value in recipe.to_dict().items() if key != "weights"}
    spec["training_precision"] = computed_in
    if computed_in != "float32":
        print(f"Training computes in {computed_in} (precision {recipe.precision!r}); the model returned is float32.", flush=True)

    consistency_view = recipe.consistency_view if recipe.consistency_weight else None

    size_schedule = augment.InputSizeSchedule(epoch_sizes(recipe)) if recipe.progressive_sizes else None
    curve_probe = None
    if recipe.curve_every:
        x_probe, y_probe = curve.corrupted_probe_set(split.x_validation, split.y_validation)
        curve_probe = curve.AccuracyCurve(x_probe, y_probe, every=recipe.curve_every, epochs=recipe.epochs)

    def make_training_data(batch_size: int):
        batches = augment.training_dataset(
            split.x_train, split.y_train, batch_size, recipe.policy, seed=seed, consistency_view=consistency_view
        )
        if size_schedule is None:
            return batches
        return augment.resized_batches(batches, size_schedule, mode=recipe.progressive_mode, seed=seed)

    trainer = model
    if recipe.consistency_weight:
        # The trainer shares the model's layers: training it trains the model, which is what is returned and saved.
        with distribution.scope() if distribution is not None else contextlib.nullcontext():
            trainer = consistency.ConsistencyTrainer(model, recipe.consistency_weight)
    records = phases_module.train_phases(
        trainer,
        make_training_data,
        (split.x_validation, split.y_validation),
        phases(recipe, model),
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        label_mode="categorical",
        label_smoothing=recipe.label_smoothing,
        verbose=verbose,
        distribution=distribution,
        callbacks=[callback for callback in (size_schedule, curve_probe, *callbacks) if callback is not None] or None,
    )
    history = [entry for record in records for entry in record["history"]]
    if curve_probe is not None:
        # The curve of a one-phase recipe: its rows join the history by epoch (a resumed training has the rows since).
        by_epoch = {row["epoch"]: row for row in curve_probe.rows}
        for entry in history:
            row = by_epoch.get(entry.get("epoch"), {})
            entry.update({key: row[key] for key in ("training_minutes", "corrupted_probe_accuracy") if key in row})
    phase_starts = np.cumsum([len(record["history"]) for record in records])[:-1].tolist()
    if computed_in != "float32" or recipe.progressive_sizes:
        model = float32_copy(model, spec, distribution)
    return model, spec, history, phase_starts


def float32_copy(model, spec: dict, distribution=None):
    """The spec's architecture built in float32, holding `model`'s (float32) weights: what a model trained
    under a mixed precision policy predicts with, on any machine."""
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        copy = models.build_model(spec)
    copy.set_weights(model.get_weights())
    return copy
