"""Fused augmentation layers: several Keras preprocessing steps computed as one operation per image.

On a 2-core machine the augmentation runs on the same cores as training, so every millisecond it takes
per image is a millisecond of training lost (the suite's aim: augmented training keeps >= 90 % of plain
training's speed). Keras' layers each resample the whole image: RandomRotation, RandomTranslation and
RandomZoom warp it three times, RandomSaturation and RandomHue each convert it to HSV and back. The two
layers here do the same work once:

- `FusedGeometry`: rotation, translation and zoom, each drawn per image with its own probability,
  composed into one affine matrix and applied with one warp (bilinear, reflected border), only to the
  images that drew a rotation, translation or zoom; an image that only flips is mirrored exactly by
  reversing its rows or columns, a tenth of a warp's cost.
- `FusedColor`: brightness, contrast, saturation and hue, each drawn per image with its own
  probability, on each channel's (B, H, W) plane (TensorFlow broadcasts mismatched shapes slowly),
  instead of four layers and two HSV round trips:
  brightness and contrast as one scale and offset per channel; saturation scaled as HSV scales it
  (value and hue kept, so it matches RandomSaturation and ImageNet-C's saturate) straight on RGB;
  hue as a rotation of the colours about the grey axis (one 3x3 matrix per image), which follows
  RandomHue's HSV shift in range and sign but not pixel for pixel; and `value`, ImageNet-C's
  brightness (HSV's value plus a shift, capped, hue and saturation kept: each pixel scaled by its
  new value over its old one), which per-channel input standardisation cannot undo as it undoes an
  added brightness.

A spec names the layer and its components, e.g.
`{"layer": "FusedColor", "brightness": 0.3, "brightness_probability": 0.3, "hue": 0.1, "hue_probability": 0.3}`.
Each factor means what it means for the Keras layer of that name (`rotation` as RandomRotation's
`factor`, a fraction of a full turn; `translation` as RandomTranslation's factors, a fraction of the
side; `zoom` as RandomZoom's `height_factor`; `brightness`, `contrast`, `saturation`, `hue` as the
factors of RandomBrightness, RandomContrast, RandomSaturation and RandomHue; `value` as a fraction of
255 like `brightness`); a component left out is
never applied. `utils.augment.Augmenter` draws the parameters (`draw`), picks the images that drew
something, and calls `transform` on them only, with the backend's ops (TensorFlow inside tf.data).
"""

from __future__ import annotations

import math

import numpy as np

PIXEL_MAX = 255.0


def float_constant(backend, array):
    """A float32 tensor of the backend (a TensorFlow tensor inside tf.data) holding a NumPy constant."""
    return backend.core.convert_to_tensor(np.asarray(array, dtype="float32"))


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _symmetric_range(name: str, value, low_limit: float | None = None) -> tuple[float, float] | None:
    """A factor as Keras layers take it: a number f means [-f, f], a pair is [low, high]."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(item, (int, float)) for item in value):
        low, high = float(value[0]), float(value[1])
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        low, high = -float(value), float(value)
    else:
        raise ValueError(f"{name} must be a non-negative number f (meaning [-f, f]) or a pair [low, high], got {value!r}")
    if low > high or (low_limit is not None and low < low_limit):
        raise ValueError(
            f"{name} range [{low}, {high}] must have low <= high" + (f" and low >= {low_limit}" if low_limit is not None else "")
        )
    return low, high


class _FusedLayer:
    """What the Augmenter needs of a fused layer: `components`, `draw` and `transform`."""

    components: tuple[str, ...] = ()

    def __init__(self, **arguments):
        unknown = sorted(set(arguments) - set(self.arguments()))
        if unknown:
            raise TypeError(f"unknown argument(s) {', '.join(unknown)}; {type(self).__name__} takes {', '.join(self.arguments())}")
        self.probabilities = {}
        self.ranges = {}
        for component in self.components:
            self.ranges[component] = self._range(component, arguments.get(component))
            self.probabilities[component] = _probability(f"{component}_probability", arguments.get(f"{component}_probability", 1.0))
        if all(value is None for value in self.ranges.values()):
            raise ValueError(f"{type(self).__name__} needs at least one of {', '.join(self.components)}")

    @classmethod
    def arguments(cls) -> tuple[str, ...]:
        return tuple(cls.components) + tuple(f"{component}_probability" for component in cls.components) + cls.extra_arguments

    extra_arguments: tuple[str, ...] = ()

    def _range(self, component: str, value):
        return _symmetric_range(component, value)

    def draw(self, batch_size, uniform, backend) -> dict:
        """Per-image parameters: for each component, its value where drawn and the identity elsewhere,
        plus "active" (the images that drew at least one component). `uniform(shape)` gives U[0, 1)."""
        numpy = backend.numpy
        parameters, active = {}, None
        for component in self.components:
            value_range = self.ranges[component]
            if value_range is None:
                continue
            draws = uniform((batch_size, 3))
            applied = draws[:, 0] < self.probabilities[component]
            low, high = value_range
            for name, value, identity in self._values(component, low + (high - low) * draws[:, 1:]):
                parameters[name] = numpy.where(applied, value, identity * numpy.ones_like(value))
            active = applied if active is None else numpy.logical_or(active, applied)
        parameters["active"] = active
        return parameters

    def _values(self, component, values):
        """(parameter name, per-image value, identity value) triples from two uniform draws per image in the range."""
        raise NotImplementedError


class FusedGeometry(_FusedLayer):
    """Flips, rotation, translation and zoom as one affine warp per image (reflected border, bilinear).

    `flip_horizontal` and `flip_vertical` are the probabilities of each flip (RandomFlip's is 0.5), so
    they take no `_probability` of their own; a flip alone warps exactly (no interpolation)."""

    components = ("rotation", "translation", "zoom")
    extra_arguments = ("fill_mode", "flip_horizontal", "flip_vertical")

    def __init__(self, fill_mode: str = "reflect", flip_horizontal: float = 0.0, flip_vertical: float = 0.0, **arguments):
        if fill_mode not in ("reflect", "wrap", "nearest", "constant"):
            raise ValueError(f"fill_mode must be 'reflect', 'wrap', 'nearest' or 'constant', got {fill_mode!r}")
        self.fill_mode = fill_mode
        self.flip_probabilities = {
            "flip_horizontal": _probability("flip_horizontal", flip_horizontal),
            "flip_vertical": _probability("flip_vertical", flip_vertical),
        }
        if any(self.flip_probabilities.values()) and not any(key in arguments for key in self.components):
            arguments = {**arguments, "rotation": 0.0, "rotation_probability": 0.0}  # flips alone are a geometry too
        super().__init__(**arguments)

    def _range(self, component, value):
        return _symmetric_range(component, value, low_limit=-0.9 if component == "zoom" else None)

    def _values(self, component, values):
        if component == "translation":
            # The two axes are drawn independently from the same range, as RandomTranslation draws them.
            return [("translation_x", values[:, 0], 0.0), ("translation_y", values[:, 1], 0.0)]
        return [(component, values[:, 0], 0.0)]

    def draw(self, batch_size, uniform, backend) -> dict:
        numpy = backend.numpy
        parameters = super().draw(batch_size, uniform, backend)
        # The images that drew a rotation, translation or zoom need the warp; the others at most flip.
        parameters["warp"] = parameters["active"]
        for name, probability in self.flip_probabilities.items():
            if probability > 0.0:
                applied = uniform((batch_size,)) < probability
                parameters[name] = numpy.where(applied, -1.0, 1.0)
                parameters["active"] = numpy.logical_or(parameters["active"], applied)
        return parameters

    def transform(self, images, parameters, backend):
        """Warps the images that drew a rotation, translation or zoom; flips the others exactly and cheaply.

        A flip alone by the warp costs as much as a rotation (0.3 CPU-ms per image); reversing the image's
        rows or columns costs a tenth of that. About one image in five only flips (docs/experiments/augmentation-throughput.md)."""
        numpy = backend.numpy
        warp = parameters["warp"]
        updates = []
        for chosen, transform in ((warp, self._warp), (numpy.logical_not(warp), self._flip)):
            indices = numpy.where(chosen)[0]
            subset = {name: numpy.take(value, indices, axis=0) for name, value in parameters.items()}
            updates.append((indices, transform(numpy.take(images, indices, axis=0), subset, backend)))
        for indices, new_images in updates:
            images = backend.core.scatter_update(images, indices[:, None], new_images)
        return images

    def _flip(self, images, parameters, backend):
        """Exact flips: each image is replaced by its mirror image where its flip parameter is -1."""
        numpy = backend.numpy
        size = backend.core.shape(images)[0]
        count = backend.core.cast(numpy.arange(size), "int32")
        for name, axis in (("flip_horizontal", 2), ("flip_vertical", 1)):
            if name in parameters:
                mirrored = backend.core.cast(numpy.less(parameters[name], 0.0), "int32")
                both = numpy.concatenate([images, numpy.flip(images, axis=axis)], axis=0)
                images = numpy.take(both, count + size * mirrored, axis=0)
        return images

    def _warp(self, images, parameters, backend):
        numpy = backend.numpy
        height, width = images.shape[1], images.shape[2]
        zeros = numpy.zeros_like(parameters["active"], dtype="float32")
        angle = parameters.get("rotation", zeros) * (2.0 * math.pi)
        scale = 1.0 + parameters.get("zoom", zeros)
        shift_x = parameters.get("translation_x", zeros) * float(width)
        shift_y = parameters.get("translation_y", zeros) * float(height)
        flip_x = parameters.get("flip_horizontal", zeros + 1.0)
        flip_y = parameters.get("flip_vertical", zeros + 1.0)
        cosine, sine = numpy.cos(angle) * scale, numpy.sin(angle) * scale
        # Output pixel p reads input pixel R(angle) * scale * F * (p - centre) + centre - shift, where the
        # diagonal F = (flip_x, flip_y) holds -1 for a flipped axis.
        a0, a1, b0, b1 = cosine * flip_x, -sine * flip_y, sine * flip_x, cosine * flip_y
        centre_x, centre_y = (float(width) - 1.0) / 2.0, (float(height) - 1.0) / 2.0
        transform = numpy.stack(
            [
                a0,
                a1,
                centre_x - a0 * centre_x - a1 * centre_y - shift_x,
                b0,
                b1,
                centre_y - b0 * centre_x - b1 * centre_y - shift_y,
                zeros,
                zeros,
            ],
            axis=1,
        )
        if getattr(backend, "name", None) == "torch" and self.fill_mode in TORCH_PADDING:
            return torch_affine_bilinear(images, transform, self.fill_mode)
        return backend.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode=self.fill_mode, data_format="channels_last"
        )


# Keras' fill modes that torch's grid_sample has (with align_corners=False, "reflection" mirrors about the
# image's edges, half a pixel beyond the outer pixel centres, as Keras' "reflect" does).
TORCH_PADDING = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}


def torch_affine_bilinear(images, transform, fill_mode: str = "reflect"):
    """`keras.ops.image.affine_transform` (bilinear, channels last) for torch tensors, through torch's
    `affine_grid` and `grid_sample`. Keras' own implementation under torch is built of many small
    operations: about 2 ms per 96x96 image on an idle 2-core machine and tens of ms when other work
    shares the cores, against 0.15 ms here (docs/experiments/backend-speed.md).

    `transform` holds Keras' 8 numbers per image: output pixel (x, y) reads input pixel
    (a0 x + a1 y + a2, b0 x + b1 y + b2). grid_sample wants the same map in coordinates normalised to
    [-1, 1] across the image's outer edges (align_corners=False), so the matrix is wrapped between
    the two changes of coordinates."""
    import torch

    batch, height, width, channels = images.shape
    transform = torch.as_tensor(transform, dtype=torch.float32, device=images.device)
    pixel_map = torch.cat([transform[:, :6], torch.tensor([0.0, 0.0, 1.0], device=images.device).expand(batch, 3)], dim=1)
    pixel_map = pixel_map.reshape(batch, 3, 3)
    to_pixels = torch.tensor(
        [[width / 2.0, 0.0, (width - 1) / 2.0], [0.0, height / 2.0, (height - 1) / 2.0], [0.0, 0.0, 1.0]], device=images.device
    )
    to_normalised = torch.tensor(
        [[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0], [0.0, 0.0, 1.0]], device=images.device
    )
    theta = (to_normalised @ pixel_map @ to_pixels)[:, :2]
    planes = images.to(torch.float32).permute(0, 3, 1, 2)
    grid = torch.nn.functional.affine_grid(theta, [batch, channels, height, width], align_corners=False)
    warped = torch.nn.functional.grid_sample(planes, grid, mode="bilinear", padding_mode=TORCH_PADDING[fill_mode], align_corners=False)
    return warped.permute(0, 2, 3, 1).contiguous()


class FusedColor(_FusedLayer):
    """Brightness, contrast, saturation and hue in three cheap passes (see the module notes), and the
    brightness of ImageNet-C and scikit-image's HSV (`value`: V + v, hue and saturation kept)."""

    components = ("brightness", "contrast", "saturation", "hue", "value")
    identity = {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "value": 0.0}

    def _range(self, component, value):
        if value is None:
            return None
        if component == "saturation":
            # RandomSaturation's factor: f in [low, high] within [0, 1] multiplies saturation by f / (1 - f).
            low, high = value if isinstance(value, (list, tuple)) else (value, value)
            if not 0.0 <= float(low) <= float(high) <= 1.0:
                raise ValueError(f"saturation must be a pair [low, high] within [0, 1], got {value!r}")
            return float(low), float(high)
        # Hue, like RandomHue's factor f, shifts by up to f / 2 of a turn, either way.
        return _symmetric_range(component, value)

    def _values(self, component, values):
        value = values[:, 0]
        if component in ("brightness", "value"):
            value = value * PIXEL_MAX
        elif component == "contrast":
            value = 1.0 + value
        elif component == "saturation":
            value = value / (1.0 - value + 1e-7)
        else:
            value = value * math.pi  # hue: f / 2 of a turn is f * pi radians
        return [(component, value, self.identity[component])]

    def transform(self, images, parameters, backend):
        numpy = backend.numpy
        ones = numpy.ones_like(parameters["active"], dtype="float32")
        delta = parameters.get("brightness", 0.0 * ones)[:, None, None]
        contrast = parameters.get("contrast", ones)[:, None, None]
        saturation = parameters.get("saturation", ones)[:, None, None]
        angle = parameters.get("hue", 0.0 * ones)
        # Each channel is computed as its own (B, H, W) plane and the planes are joined by the hue's matrix
        # product: TensorFlow broadcasts a (B, H, W, 1) or (B, 1, 1, 3) operand against (B, H, W, 3) images
        # several times slower than it combines equal shapes, reduces over a last axis of 3 slowly, and
        # concatenates along it slowly. Planes make this layer 3 times cheaper, with the same result
        # (docs/experiments/augmentation-throughput.md).
        channels = [images[..., index] for index in range(3)]
        # Brightness adds delta; contrast scales about the (brightened) per-channel mean m + delta:
        # c * (p + delta - m - delta) + m + delta = c * p + (1 - c) * m + delta. Clipped, as Keras clips.
        channels = [
            numpy.clip(contrast * plane + ((1.0 - contrast) * numpy.mean(plane, axis=(1, 2), keepdims=True) + delta), 0.0, PIXEL_MAX)
            for plane in channels
        ]
        if "value" in parameters:
            # ImageNet-C's brightness adds v to HSV's value V (the largest channel), capped at 255, and keeps hue
            # and saturation: every channel moves towards the new value as c' = V' - (V' / V) * (V - c), which
            # scales a pixel by V' / V and turns a black one (V = 0) into grey V'. Per-channel standardisation
            # cannot undo it: a dark nucleus brightens by more than the background.
            largest = numpy.maximum(numpy.maximum(channels[0], channels[1]), channels[2])
            new_largest = numpy.clip(largest + parameters["value"][:, None, None], 0.0, PIXEL_MAX)
            gain = new_largest / numpy.maximum(largest, 1e-3)
            channels = [new_largest - gain * (largest - plane) for plane in channels]
        # Saturation as HSV scales it (RandomSaturation, ImageNet-C's saturate): hue and value (the largest
        # channel V) stay, the saturation S = (V - min) / V is multiplied by s and capped at 1, so each channel
        # moves from V by the factor k = min(s, 1 / S): c' = V - k * (V - c).
        red, green, blue = channels
        largest = numpy.maximum(numpy.maximum(red, green), blue)
        spread = largest - numpy.minimum(numpy.minimum(red, green), blue)
        factor = numpy.minimum(saturation, largest / numpy.maximum(spread, 1e-3))
        planes = numpy.stack([largest - factor * (largest - plane) for plane in channels], axis=1)  # (B, 3, H, W)
        # Hue: rotation by `angle` about the grey axis u = (1, 1, 1) / sqrt(3) (Rodrigues' formula).
        constant = lambda array: float_constant(backend, array)  # noqa: E731
        axis = np.full(3, 1.0 / math.sqrt(3.0))
        cross = constant([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
        outer = constant(np.outer(axis, axis))
        cosine, sine = numpy.cos(angle)[:, None, None], numpy.sin(angle)[:, None, None]
        rotate = cosine * constant(np.eye(3)) + sine * cross + (1.0 - cosine) * outer  # (B, 3, 3)
        return numpy.clip(numpy.einsum("bjhw,bij->bhwi", planes, rotate), 0.0, PIXEL_MAX)


# Uniform noise on [-sqrt(3), sqrt(3)] has a standard deviation of 1.
UNIFORM_NOISE_HALF_WIDTH = math.sqrt(3.0)


class UniformNoise:
    """Additive noise of standard deviation `stddev` (a fraction of 255, or a [low, high] range drawn per
    image, as the suite's GaussianNoise takes it) drawn from a uniform distribution instead of a normal one:
    TensorFlow draws uniform numbers about 3 times faster than normal ones, and the augmentation runs on
    the cores that train. Inside tf.data the noise is drawn as random bytes (256 levels, four per random
    word), 3 times cheaper again than float uniform numbers. The Augmenter applies it (see `utils.augment`);
    this holds the checked stddev."""

    def __init__(self, stddev=0.1):
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or not 0.0 <= stddev <= 1.0:
            raise ValueError(f"stddev must be a number from 0 to 1 or a range [low, high] within it, got {stddev!r}")
        self.stddev = float(stddev)


class EraseRectangle:
    """One rectangle per image painted in one random flat colour: an occluder (debris, a bubble's rim).

    Its sides are drawn as RandomErasing draws them (each side is sqrt(u) of the image's side, u uniform in
    `scale`), at a uniform position. RandomErasing fills with clipped normal noise drawn for the whole
    batch, about 0.5 CPU-ms per erased image; a flat colour costs a tenth of that."""

    def __init__(self, scale=(0.02, 0.1)):
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0.0 <= float(scale[0]) <= float(scale[1]) <= 1.0):
            raise ValueError(f"scale must be a pair [low, high] within [0, 1], got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))

    def draw(self, batch_size, uniform, backend) -> dict:
        numpy = backend.numpy
        draws = uniform((batch_size, 7))
        low, high = self.scale
        sides = numpy.sqrt(low + (high - low) * draws[:, 0:2])  # (height, width) as fractions
        starts = draws[:, 2:4] * (1.0 - sides)
        return {"sides": sides, "starts": starts, "colour": draws[:, 4:7] * PIXEL_MAX, "active": draws[:, 0] >= 0.0}

    def transform(self, images, parameters, backend):
        numpy = backend.numpy
        height, width = images.shape[1], images.shape[2]
        rows = backend.core.convert_to_tensor(np.arange(height, dtype="float32") / height)[None, :, None]
        columns = backend.core.convert_to_tensor(np.arange(width, dtype="float32") / width)[None, None, :]
        starts, sides = parameters["starts"], parameters["sides"]
        inside_rows = numpy.logical_and(rows >= starts[:, 0, None, None], rows < (starts[:, 0] + sides[:, 0])[:, None, None])
        inside_columns = numpy.logical_and(columns >= starts[:, 1, None, None], columns < (starts[:, 1] + sides[:, 1])[:, None, None])
        # The rectangle's mask and its colour are spread over the (B, H, W, 3) images by matrix products, which
        # TensorFlow computes 3 times faster than a broadcast `where` (docs/experiments/augmentation-throughput.md).
        # Exact: inside, p - p * 1 + colour is the colour; outside, p - p * 0 + 0 is p.
        float_rows = backend.core.cast(inside_rows, "float32")  # (B, H, 1)
        float_columns = backend.core.cast(inside_columns, "float32")  # (B, 1, W)
        batch = backend.core.shape(images)[0]
        inside = numpy.reshape(numpy.matmul(float_rows, float_columns), (batch, height * width, 1))
        mask = numpy.reshape(numpy.matmul(inside, numpy.ones((1, 1, 3), dtype="float32")), (batch, height, width, 3))
        paint = numpy.reshape(numpy.matmul(inside, parameters["colour"][:, None, :]), (batch, height, width, 3))
        return images - images * mask + paint


FUSED_LAYERS = {"FusedGeometry": FusedGeometry, "FusedColor": FusedColor, "EraseRectangle": EraseRectangle}
