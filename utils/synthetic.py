"""Seeded synthetic blood-cell data set with planted outliers and their ground truth.

The notebook suite has to run anywhere, also where the real challenge data are
missing, so this module draws a small stand-in data set in the challenge's
format: 96x96 RGB `uint8` pictures of a stained white blood cell (or a platelet)
centred on a pale background with red blood cells around it, labelled with one
of eight classes.

The classes share one stain palette and one distribution of stain, blur and
noise variation, so colour alone does not separate them; they differ in shape
and texture the way the real cells do: the number and shape of nuclear lobes,
granules, vacuoles and the size of the cell. A small model therefore learns
them well above chance but not perfectly.

On top of the clean cells the generator plants every kind of outlier that the
outlier notebook looks for and records, for every image that a correct cleaning
should drop, why it should be dropped (`SyntheticDataset.planted`):

* non-cell pictures copied byte-identically across all classes (conflicting
  labels and out of distribution), like the challenge's 1,600 copies of one
  picture spread over the eight classes;
* a non-cell picture copied byte-identically many times within one class;
* single non-cell pictures;
* exact copies of cells with the same label (the first copy is kept);
* near copies of cells with the same label: re-encoded as JPEG, shifted,
  re-coloured or cropped and resized back (the first copy is kept);
* copies (exact or near) of a cell with a different label: the whole group
  is dropped because nobody can tell which label is right.

Everything is drawn with vectorised numpy operations on coordinate grids from
one `numpy.random.Generator`, so the same seed gives byte-identical output and
2,000 images take a few seconds.

Example:

```python
from utils.synthetic import make_synthetic_dataset

dataset = make_synthetic_dataset(n_images=2000, seed=0)
keep = np.ones(len(dataset.labels), dtype=bool)
keep[dataset.planted["index"].to_numpy()] = False
clean_images, clean_labels = dataset.images[keep], dataset.labels[keep]
```
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from utils.config import CLASS_NAMES  # noqa: F401  (re-exported: the synthetic classes are the challenge's)

# Class sizes of the real challenge data, used as relative class frequencies so
# that the synthetic classes are imbalanced in the same way.
REAL_CLASS_COUNTS = (1030, 2391, 1281, 2224, 1062, 1410, 2542, 1833)

IMAGE_SIZE = 96
MINIMUM_IMAGES = 200
MAXIMUM_OUTLIER_FRACTION = 0.3

PLANTED_REASONS = (
    "out of distribution",
    "conflicting-label duplicate",
    "exact copy",
    "near copy",
)
NEAR_COPY_TRANSFORMS = ("jpeg", "shift", "recolour", "crop")
PLANTED_COLUMNS = ("index", "reason", "source_index", "transform", "group")

# The coordinate grid shared by all drawing functions: row (y) and column (x)
# of every pixel, as float32 so that the arithmetic stays fast.
GRID_Y, GRID_X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)

# Base colours, RGB in [0, 1], before the per-image stain variation.
BACKGROUND_COLOUR = np.array([0.955, 0.895, 0.845], dtype=np.float32)
RED_CELL_COLOUR = np.array([0.80, 0.63, 0.67], dtype=np.float32)
NUCLEUS_COLOUR = np.array([0.40, 0.24, 0.60], dtype=np.float32)
DENSE_NUCLEUS_COLOUR = np.array([0.30, 0.16, 0.50], dtype=np.float32)
PALE_NUCLEUS_COLOUR = np.array([0.50, 0.34, 0.68], dtype=np.float32)

# Shape parameters of the Beta distribution of a cell's typicality (0: looks
# like a neighbouring class, 1: textbook). It sets how much the classes overlap.
TYPICALITY_BETA = (1.6, 1.0)


@dataclass
class SyntheticDataset:
    """A synthetic data set in the challenge's format with outlier ground truth.

    Attributes:
        images: `uint8` array of shape (N, 96, 96, 3) holding RGB pictures.
        labels: `int64` array of shape (N,) with class indices into
            `CLASS_NAMES`.
        planted: One row per image that a correct cleaning should drop, with
            the columns `index` (position in `images`), `reason` (one of
            "out of distribution", "conflicting-label duplicate",
            "exact copy", "near copy"), `source_index` (the position of the
            image that this one copies, or -1 for originals and single
            pictures), `transform` ("identical", "jpeg", "shift", "recolour",
            "crop", or "" for out-of-distribution pictures; the original of a
            conflicting group is listed as "identical") and `group` (an
            identifier shared by all images that are copies of one another,
            or -1 for single pictures). Rows are sorted by `index`.
    """

    images: np.ndarray
    labels: np.ndarray
    planted: pd.DataFrame

    @property
    def keep_mask(self) -> np.ndarray:
        """Boolean mask that is True for the images a correct cleaning keeps."""
        keep = np.ones(len(self.labels), dtype=bool)
        keep[self.planted["index"].to_numpy(dtype=np.int64)] = False
        return keep


# ---------------------------------------------------------------------------
# Small drawing helpers. Shapes are described by signed distances (positive
# inside, in pixels) so that unions, intersections and cut-outs are simple
# maxima and minima, and edges are anti-aliased by a soft clip.
# ---------------------------------------------------------------------------


def _soft_alpha(signed_distance: np.ndarray, softness: float = 0.8) -> np.ndarray:
    """Turns a signed distance (positive inside) into an anti-aliased opacity."""
    return np.clip(signed_distance / softness + 0.5, 0.0, 1.0)


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paints `colour` over `image` with the per-pixel opacity `alpha`."""
    alpha = alpha.astype(np.float32, copy=False)[..., None]
    colour = np.asarray(colour, dtype=np.float32)
    return image * (1.0 - alpha) + colour * alpha


def _blob_distance(
    centre_x: float,
    centre_y: float,
    radius: float,
    aspect: float,
    angle: float,
    harmonics: np.ndarray,
    phases: np.ndarray,
) -> np.ndarray:
    """Signed distance of an irregular ellipse whose outline wobbles.

    The outline radius is modulated by a few low-frequency cosine harmonics,
    which gives the slightly irregular outline of real nuclei and cells.
    """
    # Python floats keep the arithmetic in float32 (numpy scalars would promote it).
    radius, aspect, angle = float(radius), float(aspect), float(angle)
    delta_x = GRID_X - float(centre_x)
    delta_y = GRID_Y - float(centre_y)
    cosine, sine = math.cos(angle), math.sin(angle)
    along = delta_x * cosine + delta_y * sine
    across = (-delta_x * sine + delta_y * cosine) / aspect
    distance = np.sqrt(along * along + across * across)
    polar_angle = np.arctan2(across, along)
    outline = np.full_like(distance, radius)
    for order, (amplitude, phase) in enumerate(zip(harmonics, phases), start=2):
        outline += radius * float(amplitude) * np.cos(order * polar_angle + float(phase))
    return outline - distance


def _circle_distance(centre_x: float, centre_y: float, radius: float) -> np.ndarray:
    """Signed distance of a circle."""
    return float(radius) - np.sqrt((GRID_X - float(centre_x)) ** 2 + (GRID_Y - float(centre_y)) ** 2)


def _segment_distance(
    start: tuple[float, float], end: tuple[float, float], half_width: float
) -> np.ndarray:
    """Signed distance of a thick line segment (a capsule)."""
    start_x, start_y = float(start[0]), float(start[1])
    end_x, end_y = float(end[0]), float(end[1])
    half_width = float(half_width)
    direction_x, direction_y = end_x - start_x, end_y - start_y
    length_squared = max(direction_x**2 + direction_y**2, 1e-6)
    position = ((GRID_X - start_x) * direction_x + (GRID_Y - start_y) * direction_y) / length_squared
    position = np.clip(position, 0.0, 1.0)
    closest_x = start_x + position * direction_x
    closest_y = start_y + position * direction_y
    return half_width - np.sqrt((GRID_X - closest_x) ** 2 + (GRID_Y - closest_y) ** 2)


def _random_blob(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    radius: float,
    aspect: float,
    angle: float,
    roughness: float,
) -> np.ndarray:
    """Signed distance of a blob with random outline harmonics of given roughness."""
    harmonics = rng.normal(0.0, roughness, size=4) / np.arange(1, 5)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=4)
    return _blob_distance(centre_x, centre_y, radius, aspect, angle, harmonics, phases)


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(
        rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32), sigma, mode="wrap"
    )
    return noise / (noise.std() + 1e-6)


def _granule_field(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    radius: float,
    count: int,
    granule_sigma: float,
) -> np.ndarray:
    """Opacity in [0, 1] of `count` round granules scattered over a disc.

    Granule centres are splatted into a grid and blurred, which is much
    cheaper than measuring the distance from every pixel to every granule.
    """
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    if count <= 0:
        return field
    distance = radius * np.sqrt(rng.uniform(0.0, 1.0, size=count))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    rows = np.clip(np.round(centre_y + distance * np.sin(angle)), 0, IMAGE_SIZE - 1).astype(int)
    columns = np.clip(np.round(centre_x + distance * np.cos(angle)), 0, IMAGE_SIZE - 1).astype(int)
    np.add.at(field, (rows, columns), 1.0)
    field = ndimage.gaussian_filter(field, granule_sigma)
    peak = 1.0 / (2.0 * np.pi * granule_sigma**2)
    return np.clip(field / (0.55 * peak), 0.0, 1.0)


# ---------------------------------------------------------------------------
# Background: the pale smear with red blood cells.
# ---------------------------------------------------------------------------


def _make_red_cell_sprites() -> list[np.ndarray]:
    """Pre-draws a bank of red blood cell opacity sprites of varied size and shape.

    Drawing every red cell from scratch on the full grid would dominate the
    generation time, so the background pastes sprites from this bank instead.
    Sprites differ in radius, ellipticity, orientation and central pallor.
    """
    sprite_rng = np.random.default_rng(20240607)
    sprites = []
    for radius in np.linspace(8.0, 10.5, 8):
        for _ in range(6):
            half = int(np.ceil(radius)) + 2
            offsets = np.arange(-half, half + 1, dtype=np.float32) + sprite_rng.uniform(-0.5, 0.5)
            local_y, local_x = np.meshgrid(offsets, offsets, indexing="ij")
            angle = sprite_rng.uniform(0.0, np.pi)
            stretch = sprite_rng.uniform(0.82, 1.0)
            along = local_x * np.cos(angle) + local_y * np.sin(angle)
            across = (-local_x * np.sin(angle) + local_y * np.cos(angle)) / stretch
            relative = np.sqrt(along**2 + across**2) / radius
            edge = _soft_alpha((1.0 - relative) * radius, 1.0)
            # Red cells are biconcave: the rim takes up more stain than the pale centre.
            pallor_depth = sprite_rng.uniform(0.2, 0.5)
            profile = 1.0 - pallor_depth * np.clip(1.0 - relative / 0.6, 0.0, 1.0) ** 1.5
            sprites.append((edge * profile).astype(np.float32))
    return sprites


RED_CELL_SPRITES = _make_red_cell_sprites()


def _draw_background(rng: np.random.Generator) -> np.ndarray:
    """Draws the pale background with pinkish red blood cells scattered over it.

    Red cells sit on a jittered hexagonal lattice with random spacing,
    orientation and gaps, which packs them like a real smear without
    overlapping much; each one is a sprite from `RED_CELL_SPRITES`.
    """
    # Gentle uneven illumination across the field.
    tilt_x, tilt_y, vignette = (float(value) for value in rng.normal(0.0, 0.012, size=3))
    shade = 1.0 + tilt_x * (GRID_X / 48.0 - 1.0) + tilt_y * (GRID_Y / 48.0 - 1.0)
    shade = shade - abs(vignette) * ((GRID_X / 48.0 - 1.0) ** 2 + (GRID_Y / 48.0 - 1.0) ** 2)
    image = BACKGROUND_COLOUR[None, None, :] * shade[..., None]

    spacing = rng.uniform(21.5, 27.0)
    lattice_angle = rng.uniform(0.0, np.pi / 3.0)
    steps = np.arange(-4, 5, dtype=np.float32)
    step_a, step_b = np.meshgrid(steps, steps, indexing="ij")
    lattice_x = (step_a + 0.5 * step_b) * spacing
    lattice_y = step_b * (np.sqrt(3.0) / 2.0) * spacing
    cosine, sine = np.cos(lattice_angle), np.sin(lattice_angle)
    centres_x = 48.0 + rng.uniform(-spacing, spacing) + lattice_x * cosine - lattice_y * sine
    centres_y = 48.0 + rng.uniform(-spacing, spacing) + lattice_x * sine + lattice_y * cosine
    centres_x = centres_x.ravel() + rng.normal(0.0, 0.12 * spacing, size=centres_x.size)
    centres_y = centres_y.ravel() + rng.normal(0.0, 0.12 * spacing, size=centres_y.size)
    present = rng.uniform(size=centres_x.size) > rng.uniform(0.05, 0.35)
    visible = present & (np.abs(centres_x - 48.0) < 60.0) & (np.abs(centres_y - 48.0) < 60.0)
    sprite_choice = rng.integers(0, len(RED_CELL_SPRITES), size=centres_x.size)

    # Paste the sprites into a padded canvas so that cells can hang over the edge.
    margin = 32
    canvas = np.zeros((IMAGE_SIZE + 2 * margin, IMAGE_SIZE + 2 * margin), dtype=np.float32)
    for centre_x, centre_y, choice in zip(centres_x[visible], centres_y[visible], sprite_choice[visible]):
        sprite = RED_CELL_SPRITES[choice]
        half = sprite.shape[0] // 2
        top = int(round(centre_y)) + margin - half
        left = int(round(centre_x)) + margin - half
        window = canvas[top : top + sprite.shape[0], left : left + sprite.shape[1]]
        np.maximum(window, sprite, out=window)
    opacity = canvas[margin:-margin, margin:-margin] * float(rng.uniform(0.55, 0.8))
    colour = RED_CELL_COLOUR * rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    return _blend(image, colour, opacity)


# ---------------------------------------------------------------------------
# The cells of the eight classes.
# ---------------------------------------------------------------------------


def _lobed_nucleus(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    cell_radius: float,
    lobe_count: int,
    lobe_radius: float,
    spread: float,
) -> np.ndarray:
    """Signed distance of a segmented nucleus: lobes joined by thin strands."""
    start_angle = rng.uniform(0.0, 2.0 * np.pi)
    arc = rng.uniform(0.9, 1.5) * np.pi if lobe_count > 2 else np.pi
    lobe_angles = start_angle + np.linspace(0.0, arc, lobe_count) + rng.normal(0, 0.15, lobe_count)
    orbit = spread * cell_radius * rng.uniform(0.85, 1.1, size=lobe_count)
    lobe_x = centre_x + orbit * np.cos(lobe_angles)
    lobe_y = centre_y + orbit * np.sin(lobe_angles)
    distance = None
    for index in range(lobe_count):
        lobe = _random_blob(
            rng,
            lobe_x[index],
            lobe_y[index],
            lobe_radius * rng.uniform(0.85, 1.15),
            rng.uniform(0.7, 1.0),
            rng.uniform(0.0, np.pi),
            0.12,
        )
        distance = lobe if distance is None else np.maximum(distance, lobe)
        if index > 0:
            strand = _segment_distance(
                (lobe_x[index - 1], lobe_y[index - 1]),
                (lobe_x[index], lobe_y[index]),
                rng.uniform(0.6, 1.3),
            )
            distance = np.maximum(distance, strand)
    return distance


def _indented_nucleus(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    radius: float,
    aspect: float,
    indentation_depth: float,
    indentation_radius: float,
) -> np.ndarray:
    """Signed distance of an oval nucleus with a bite taken out of one side.

    A shallow bite gives the indented nucleus of immature granulocytes, a deep
    one the kidney-shaped or folded nucleus of monocytes.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi)
    body = _random_blob(rng, centre_x, centre_y, radius, aspect, angle, 0.1)
    # The bite sits on the long side of the oval, pointing inwards.
    bite_angle = angle + np.pi / 2.0
    bite_offset = radius * aspect * (1.0 + indentation_radius - indentation_depth)
    bite = _circle_distance(
        centre_x + bite_offset * np.cos(bite_angle),
        centre_y + bite_offset * np.sin(bite_angle),
        radius * indentation_radius,
    )
    return np.minimum(body, -bite)


def _paint_nucleus(
    image: np.ndarray,
    rng: np.random.Generator,
    distance: np.ndarray,
    colour: np.ndarray,
    texture_strength: float,
    opacity: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Paints a nucleus with clumpy chromatin texture and returns it with its mask."""
    alpha = _soft_alpha(distance, 0.9)
    chromatin = _smooth_noise(rng, rng.uniform(0.9, 1.6))
    shading = 1.0 + float(texture_strength) * chromatin
    textured = np.clip(np.asarray(colour, dtype=np.float32) * shading[..., None], 0.0, 1.0)
    alpha = alpha * float(opacity)
    return image * (1.0 - alpha[..., None]) + textured * alpha[..., None], alpha


def _mix(atypical, typical, typicality: float) -> np.ndarray:
    """Interpolates from an atypical appearance (typicality 0) to the textbook one (1)."""
    atypical = np.asarray(atypical, dtype=np.float32)
    typical = np.asarray(typical, dtype=np.float32)
    return atypical + (typical - atypical) * np.float32(typicality)


def _paint_granules(
    image: np.ndarray,
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    cell_radius: float,
    cell_alpha: np.ndarray,
    count: int,
    size: float,
    colour: np.ndarray,
    opacity: float,
) -> np.ndarray:
    """Scatters granules of one colour over the cell."""
    granules = _granule_field(rng, centre_x, centre_y, cell_radius * 0.9, count, size)
    return _blend(image, colour, granules * (float(opacity) * cell_alpha))


# Typical cell radius range (pixels) and cytoplasm colour (RGB, 0-1) per white-cell class.
_CELL_SHAPES = {
    "neutrophil": (14.5, 19.0, (0.84, 0.72, 0.80)),
    "eosinophil": (15.0, 19.0, (0.88, 0.72, 0.70)),
    "basophil": (13.5, 17.0, (0.76, 0.66, 0.80)),
    "lymphocyte": (11.0, 15.0, (0.72, 0.72, 0.88)),
    "monocyte": (17.5, 23.0, (0.76, 0.75, 0.84)),
    "ig": (15.5, 20.0, (0.80, 0.70, 0.84)),
    "erythroblast": (9.5, 13.0, (0.74, 0.66, 0.82)),
}


def _draw_white_cell(
    image: np.ndarray,
    label: int,
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    typicality: float = 1.0,
) -> np.ndarray:
    """Draws the white cell (or erythroblast) of class `label` at the given centre.

    `typicality` runs from 0 (an atypical cell that resembles a neighbouring
    class, e.g. a band neutrophil next to an immature granulocyte, or a large
    lymphocyte next to a monocyte) to 1 (the textbook appearance). It blends
    size, granule amount and colour, nuclear shape and cytoplasm colour, so the
    classes overlap instead of being separable by one cue.
    """
    class_name = CLASS_NAMES[label]
    cell_angle = rng.uniform(0.0, 2.0 * np.pi)
    t = float(typicality)

    # Cell radius in pixels and cytoplasm colour per class; atypical cells
    # drift towards a common middle size and a common lilac cytoplasm.
    neutral_cytoplasm = np.array([0.80, 0.72, 0.84])
    radius_low, radius_high, cytoplasm = _CELL_SHAPES.get(class_name, _CELL_SHAPES["erythroblast"])
    typical_radius, typical_cytoplasm = rng.uniform(radius_low, radius_high), np.array(cytoplasm)
    cell_radius = float(_mix(rng.uniform(13.0, 18.0), typical_radius, t))
    cytoplasm_colour = _mix(neutral_cytoplasm, typical_cytoplasm, t) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)

    cell_distance = _random_blob(
        rng, centre_x, centre_y, cell_radius, rng.uniform(0.82, 1.0), cell_angle, 0.06
    )
    cell_alpha = _soft_alpha(cell_distance, 1.0)
    image = _blend(image, cytoplasm_colour, cell_alpha * rng.uniform(0.82, 0.95))

    # The nucleus may sit a little off the cell centre.
    offset = rng.uniform(0.0, 0.14) * cell_radius
    offset_angle = rng.uniform(0.0, 2.0 * np.pi)
    nucleus_x = centre_x + offset * math.cos(offset_angle)
    nucleus_y = centre_y + offset * math.sin(offset_angle)

    if class_name == "neutrophil":
        # Faint neutral granules and three to five lobes; atypical ones are
        # band forms (a curved unsegmented nucleus) or have only two lobes.
        image = _paint_granules(
            image, rng, centre_x, centre_y, cell_radius, cell_alpha,
            int(rng.integers(20, 80)), 0.6, np.array([0.76, 0.60, 0.74]), 0.35,
        )
        band_form = rng.uniform() > 0.35 + 0.65 * t
        if band_form:
            distance = _indented_nucleus(
                rng, nucleus_x, nucleus_y, cell_radius * rng.uniform(0.5, 0.62), rng.uniform(0.45, 0.65),
                rng.uniform(0.45, 0.75), rng.uniform(0.45, 0.6),
            )
        else:
            lobe_count = int(rng.choice([2, 3, 3, 4, 4, 5])) if t < 0.5 else int(rng.choice([3, 3, 4, 4, 5]))
            distance = _lobed_nucleus(
                rng, nucleus_x, nucleus_y, cell_radius, lobe_count, cell_radius * rng.uniform(0.24, 0.32), 0.4
            )
        image, _ = _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12)
    elif class_name == "eosinophil":
        # Coarse granules, orange-red in typical cells and duller in atypical
        # ones, fill the cytoplasm; the nucleus has two (sometimes three) lobes.
        granule_colour = _mix([0.78, 0.56, 0.66], [0.88, 0.45, 0.36], t)
        image = _paint_granules(
            image, rng, centre_x, centre_y, cell_radius, cell_alpha,
            int(_mix(30.0, 150.0, t) * rng.uniform(0.7, 1.2)), 0.95, granule_colour, 0.8,
        )
        lobe_count = int(rng.choice([2, 2, 2, 3]))
        distance = _lobed_nucleus(
            rng, nucleus_x, nucleus_y, cell_radius, lobe_count, cell_radius * rng.uniform(0.27, 0.34), 0.42
        )
        image, _ = _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12)
    elif class_name == "basophil":
        # A lobed or irregular nucleus hidden under coarse dark granules;
        # sparsely granulated cells show more of the nucleus.
        distance = _random_blob(
            rng, nucleus_x, nucleus_y, cell_radius * rng.uniform(0.5, 0.7), rng.uniform(0.7, 1.0),
            rng.uniform(0.0, np.pi), 0.25,
        )
        image, _ = _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12, opacity=0.85)
        image = _paint_granules(
            image, rng, centre_x, centre_y, cell_radius, cell_alpha,
            int(_mix(20.0, 120.0, t) * rng.uniform(0.7, 1.2)), 0.9, np.array([0.24, 0.12, 0.38]), 0.85,
        )
    elif class_name == "lymphocyte":
        # A large round dense nucleus leaving only a thin rim of blue
        # cytoplasm; atypical (large) lymphocytes have more cytoplasm.
        distance = _random_blob(
            rng, nucleus_x, nucleus_y, cell_radius * float(_mix(0.62, 0.84, t)) * rng.uniform(0.92, 1.06),
            rng.uniform(0.82, 1.0), rng.uniform(0.0, np.pi), 0.08,
        )
        image, _ = _paint_nucleus(image, rng, distance, DENSE_NUCLEUS_COLOUR * 1.1, 0.14)
    elif class_name == "monocyte":
        # Greyish cytoplasm with vacuoles around a large folded, kidney-shaped
        # nucleus; atypical ones have few vacuoles and a shallower fold.
        vacuole_count = int(rng.integers(0, 3) + round(7 * t * rng.uniform(0.4, 1.0)))
        for _ in range(vacuole_count):
            radius = rng.uniform(0.3, 0.8) * cell_radius
            angle = rng.uniform(0.0, 2.0 * np.pi)
            vacuole = _circle_distance(
                centre_x + radius * math.cos(angle), centre_y + radius * math.sin(angle), rng.uniform(0.9, 2.2)
            )
            image = _blend(image, np.array([0.93, 0.91, 0.94]), _soft_alpha(vacuole) * 0.7)
        distance = _indented_nucleus(
            rng, nucleus_x, nucleus_y, cell_radius * rng.uniform(0.55, 0.68), rng.uniform(0.6, 0.82),
            float(_mix(0.2, 0.5, t)) + rng.uniform(-0.08, 0.1), rng.uniform(0.35, 0.5),
        )
        image, _ = _paint_nucleus(image, rng, distance, PALE_NUCLEUS_COLOUR * 0.92, 0.1)
    elif class_name == "ig":
        # Fine lilac granules and a large oval nucleus with a shallow
        # indentation; atypical ones are deeply indented like monocytes.
        image = _paint_granules(
            image, rng, centre_x, centre_y, cell_radius, cell_alpha,
            int(_mix(40.0, 200.0, t) * rng.uniform(0.7, 1.2)), 0.55, np.array([0.66, 0.46, 0.70]), 0.55,
        )
        distance = _indented_nucleus(
            rng, nucleus_x, nucleus_y, cell_radius * rng.uniform(0.58, 0.72), rng.uniform(0.68, 0.9),
            float(_mix(0.45, 0.18, t)) + rng.uniform(-0.08, 0.08), rng.uniform(0.3, 0.45),
        )
        image, _ = _paint_nucleus(image, rng, distance, PALE_NUCLEUS_COLOUR * 0.9, 0.1)
    else:  # erythroblast
        # A small, very dense, round nucleus; atypical ones are larger with
        # a less condensed nucleus, like a lymphocyte.
        distance = _random_blob(
            rng, nucleus_x, nucleus_y, cell_radius * float(_mix(0.72, 0.58, t)) * rng.uniform(0.88, 1.12),
            rng.uniform(0.9, 1.0), rng.uniform(0.0, np.pi), 0.04,
        )
        nucleus_colour = _mix(DENSE_NUCLEUS_COLOUR * 1.1, DENSE_NUCLEUS_COLOUR * 0.85, t)
        image, _ = _paint_nucleus(image, rng, distance, nucleus_colour, 0.08, opacity=0.97)
    return image


def _draw_platelets(
    image: np.ndarray, rng: np.random.Generator, centre_x: float, centre_y: float, typicality: float = 1.0
) -> np.ndarray:
    """Draws one to three small granular purple platelet fragments near the centre.

    Atypical platelets form a bigger clump that can be mistaken for a small nucleus.
    """
    fragment_count = int(rng.choice([1, 1, 2, 2, 3]))
    for index in range(fragment_count):
        spread = 0.0 if index == 0 else rng.uniform(5.0, 11.0)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        fragment_x = centre_x + spread * math.cos(angle)
        fragment_y = centre_y + spread * math.sin(angle)
        if index == 0:
            radius = float(_mix(rng.uniform(5.0, 8.0), rng.uniform(3.5, 6.0), typicality))
        else:
            radius = rng.uniform(2.0, 4.0)
        distance = _random_blob(
            rng, fragment_x, fragment_y, radius, rng.uniform(0.6, 1.0), rng.uniform(0.0, np.pi), 0.3
        )
        # A pale lilac halo with a dark granular centre.
        image = _blend(image, np.array([0.72, 0.62, 0.82]), _soft_alpha(distance + 1.0) * 0.6)
        image, _ = _paint_nucleus(image, rng, distance - 0.8, NUCLEUS_COLOUR, 0.3, opacity=0.9)
    return image


def _stain_and_camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Applies stain strength and hue variation, defocus blur and sensor noise.

    The stain variation works on optical densities (the negative logarithm of
    transmitted light), which is how stain concentration changes the colour.
    It is drawn from the same distribution for every class.
    """
    optical_density = -np.log(np.clip(image, 1e-3, 1.0))
    strength = rng.uniform(0.8, 1.2)
    channel_gains = (strength * rng.normal(1.0, 0.09, size=3)).astype(np.float32)
    image = np.exp(-optical_density * channel_gains)
    image = image * float(rng.uniform(0.96, 1.03))
    sigma = float(rng.uniform(0.35, 1.0)) if rng.uniform() < 0.85 else float(rng.uniform(1.0, 1.8))
    image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0))
    noise_level = float(rng.uniform(0.006, 0.018))
    image = image + noise_level * rng.standard_normal(size=image.shape, dtype=np.float32)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Converts a float image in [0, 1] to `uint8` with rounding."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encodes an image as JPEG with PIL at the given quality and decodes it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def _render_one_cell(label: int, rng: np.random.Generator) -> np.ndarray:
    """Renders one clean picture of class `label` as a `uint8` array."""
    centre_x = IMAGE_SIZE / 2.0 + rng.normal(0.0, 2.5)
    centre_y = IMAGE_SIZE / 2.0 + rng.normal(0.0, 2.5)
    image = _draw_background(rng)
    # Now and then part of another white cell shows at the edge of the field,
    # for every class alike, as in real smears.
    if rng.uniform() < 0.08:
        edge_angle = rng.uniform(0.0, 2.0 * np.pi)
        image = _draw_white_cell(
            image,
            int(rng.integers(0, 7)),
            rng,
            IMAGE_SIZE / 2.0 + 50.0 * np.cos(edge_angle),
            IMAGE_SIZE / 2.0 + 50.0 * np.sin(edge_angle),
        )
    # How textbook-like this cell looks: most cells are typical, a minority
    # drift towards a neighbouring class (see `_draw_white_cell`).
    typicality = float(rng.beta(TYPICALITY_BETA[0], TYPICALITY_BETA[1]))
    if CLASS_NAMES[label] == "platelet":
        image = _draw_platelets(image, rng, centre_x, centre_y, typicality)
    else:
        image = _draw_white_cell(image, label, rng, centre_x, centre_y, typicality)
    image = _stain_and_camera(image, rng)
    # The challenge pictures are JPEG files, so the clean cells carry mild
    # JPEG artefacts too.
    return _jpeg_round_trip(_to_uint8(image), int(rng.integers(88, 96)))


def render_cells(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Renders one clean synthetic cell picture per label.

    Args:
        labels: Integer class indices in 0..7 (see `CLASS_NAMES`).
        rng: The random generator to draw from; the output is a deterministic
            function of its state and the labels.

    Returns:
        A `uint8` array of shape (len(labels), 96, 96, 3).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a one-dimensional array, got shape {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"labels must lie in 0..{len(CLASS_NAMES) - 1}, got values outside that range.")
    images = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for position, label in enumerate(labels):
        images[position] = _render_one_cell(int(label), rng)
    return images


# ---------------------------------------------------------------------------
# Non-cell pictures for the out-of-distribution outliers. They are drawn
# procedurally (not taken from skimage's sample pictures, which another
# benchmark uses).
# ---------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated-ish RGB colour in [0, 1]."""
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _picture_text(rng: np.random.Generator) -> np.ndarray:
    """Dark 'words' in lines on light paper, like a photographed page."""
    image = np.ones((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32) * rng.uniform(0.85, 1.0)
    ink = _random_colour(rng) * 0.3
    line_height = int(rng.integers(7, 12))
    for top in range(int(rng.integers(3, 8)), IMAGE_SIZE - line_height, line_height + int(rng.integers(2, 5))):
        left = int(rng.integers(3, 10))
        while left < IMAGE_SIZE - 8:
            width = int(rng.integers(4, 20))
            image[top : top + line_height - 3, left : min(left + width, IMAGE_SIZE - 3)] = ink
            left += width + int(rng.integers(3, 6))
    return image


def _picture_checkerboard(rng: np.random.Generator) -> np.ndarray:
    """A (possibly rotated) checkerboard in two random colours."""
    square = rng.uniform(6.0, 20.0)
    angle = rng.uniform(0.0, np.pi / 2.0)
    along = GRID_X * np.cos(angle) + GRID_Y * np.sin(angle)
    across = -GRID_X * np.sin(angle) + GRID_Y * np.cos(angle)
    parity = (np.floor(along / square) + np.floor(across / square)) % 2
    first, second = _random_colour(rng), _random_colour(rng)
    return np.where(parity[..., None] > 0, first, second)


def _picture_gradient(rng: np.random.Generator) -> np.ndarray:
    """A linear or radial gradient between two random colours."""
    if rng.uniform() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        position = (GRID_X * np.cos(angle) + GRID_Y * np.sin(angle)) / IMAGE_SIZE
    else:
        position = np.hypot(GRID_X - rng.uniform(0, 96), GRID_Y - rng.uniform(0, 96)) / IMAGE_SIZE
    position = (position - position.min()) / (np.ptp(position) + 1e-6)
    first, second = _random_colour(rng), _random_colour(rng)
    return first * (1.0 - position[..., None]) + second * position[..., None]


def _picture_face(rng: np.random.Generator) -> np.ndarray:
    """A cartoon smiley face on a coloured background."""
    image = np.broadcast_to(_random_colour(rng), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    centre_x, centre_y = 48 + rng.normal(0, 3), 48 + rng.normal(0, 3)
    radius = rng.uniform(30.0, 40.0)
    image = _blend(image, np.array([0.98, 0.85, 0.15], dtype=np.float32), _soft_alpha(_circle_distance(centre_x, centre_y, radius)))
    for side in (-1, 1):
        eye = _circle_distance(centre_x + side * radius * 0.35, centre_y - radius * 0.25, radius * 0.12)
        image = _blend(image, np.zeros(3, dtype=np.float32), _soft_alpha(eye))
    mouth_ring = np.minimum(
        _circle_distance(centre_x, centre_y, radius * 0.6), -_circle_distance(centre_x, centre_y, radius * 0.5)
    )
    mouth = np.minimum(mouth_ring, GRID_Y - (centre_y + radius * 0.1))
    return _blend(image, np.array([0.6, 0.1, 0.1], dtype=np.float32), _soft_alpha(mouth))


def _picture_noise(rng: np.random.Generator) -> np.ndarray:
    """Colour noise, either raw or smoothed into 'plasma' clouds."""
    noise = rng.uniform(0.0, 1.0, size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    if rng.uniform() < 0.5:
        noise = ndimage.gaussian_filter(noise, sigma=(rng.uniform(2.0, 8.0),) * 2 + (0.0,))
        noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    return noise


def _picture_shapes(rng: np.random.Generator) -> np.ndarray:
    """Random rectangles, discs and stripes in flat colours."""
    image = np.broadcast_to(_random_colour(rng), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.integers(0, 3)
        colour = _random_colour(rng)
        if kind == 0:
            top, left = rng.integers(0, 80, size=2)
            height, width = rng.integers(8, 40, size=2)
            image[top : top + height, left : left + width] = colour
        elif kind == 1:
            disc = _circle_distance(rng.uniform(0, 96), rng.uniform(0, 96), rng.uniform(5, 25))
            image = _blend(image, colour, _soft_alpha(disc))
        else:
            stripe = _segment_distance(
                tuple(rng.uniform(0, 96, size=2)), tuple(rng.uniform(0, 96, size=2)), rng.uniform(2, 6)
            )
            image = _blend(image, colour, _soft_alpha(stripe))
    return image


def _picture_rings(rng: np.random.Generator) -> np.ndarray:
    """Concentric coloured rings, like a target."""
    distance = np.hypot(GRID_X - rng.uniform(20, 76), GRID_Y - rng.uniform(20, 76))
    wave = 0.5 + 0.5 * np.sin(distance / rng.uniform(2.0, 6.0))
    first, second = _random_colour(rng), _random_colour(rng)
    return first * wave[..., None] + second * (1.0 - wave[..., None])


NON_CELL_PICTURE_KINDS = {
    "text": _picture_text,
    "checkerboard": _picture_checkerboard,
    "gradient": _picture_gradient,
    "face": _picture_face,
    "noise": _picture_noise,
    "shapes": _picture_shapes,
    "rings": _picture_rings,
}


def make_non_cell_picture(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Draws one procedurally generated non-cell picture of the given kind.

    Args:
        kind: One of the keys of `NON_CELL_PICTURE_KINDS`.
        rng: The random generator to draw from.

    Returns:
        A `uint8` array of shape (96, 96, 3).
    """
    if kind not in NON_CELL_PICTURE_KINDS:
        raise ValueError(f"Unknown picture kind {kind!r}; choose one of {sorted(NON_CELL_PICTURE_KINDS)}.")
    return _to_uint8(np.clip(NON_CELL_PICTURE_KINDS[kind](rng), 0.0, 1.0))


# ---------------------------------------------------------------------------
# Near-copy transforms.
# ---------------------------------------------------------------------------


def _shift_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shifts an image by 3 to 10 pixels, padding with the edge pixels."""
    shift_y, shift_x = 0, 0
    while max(abs(shift_y), abs(shift_x)) < 3:
        shift_y, shift_x = (int(value) for value in rng.integers(-10, 11, size=2))
    pad = 10
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    top, left = pad - shift_y, pad - shift_x
    return padded[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE].copy()


def _recolour_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Changes hue, brightness and contrast of an image noticeably but moderately."""
    pixels = image.astype(np.float32) / 255.0
    # Hue rotation in the YIQ colour space keeps the brightness channel.
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32)
    yiq = pixels @ to_yiq.T
    hue_angle = rng.choice([-1.0, 1.0]) * rng.uniform(np.deg2rad(8.0), np.deg2rad(25.0))
    cosine, sine = np.cos(hue_angle), np.sin(hue_angle)
    in_phase = yiq[..., 1] * cosine - yiq[..., 2] * sine
    quadrature = yiq[..., 1] * sine + yiq[..., 2] * cosine
    yiq = np.stack([yiq[..., 0], in_phase, quadrature], axis=-1)
    pixels = yiq @ np.linalg.inv(to_yiq).T.astype(np.float32)
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.1)
    mean = pixels.mean()
    pixels = (pixels - mean) * contrast + mean + brightness
    return _to_uint8(np.clip(pixels, 0.0, 1.0))


def _crop_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crops 70 to 95 percent of an image and resizes it back to 96x96 with PIL."""
    side = int(round(IMAGE_SIZE * rng.uniform(0.70, 0.95)))
    top, left = (int(value) for value in rng.integers(0, IMAGE_SIZE - side + 1, size=2))
    cropped = Image.fromarray(image[top : top + side, left : left + side])
    return np.array(cropped.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.uint8)


def apply_near_copy_transform(image: np.ndarray, transform: str, rng: np.random.Generator) -> np.ndarray:
    """Makes a near copy of `image` with one of the planted transforms.

    Args:
        image: A `uint8` array of shape (96, 96, 3).
        transform: "identical", "jpeg", "shift", "recolour" or "crop".
        rng: The random generator that draws the transform's parameters.

    Returns:
        The transformed `uint8` image; never byte-identical to the input unless
        the transform is "identical".
    """
    if transform == "identical":
        return image.copy()
    if transform == "jpeg":
        result = _jpeg_round_trip(image, int(rng.integers(50, 91)))
    elif transform == "shift":
        result = _shift_image(image, rng)
    elif transform == "recolour":
        result = _recolour_image(image, rng)
    elif transform == "crop":
        result = _crop_image(image, rng)
    else:
        raise ValueError(f"Unknown transform {transform!r}; choose one of identical, {', '.join(NEAR_COPY_TRANSFORMS)}.")
    if np.array_equal(result, image):
        # Practically impossible, but a near copy must never be an exact copy.
        result = result.copy()
        result[0, 0] = result[0, 0] ^ np.uint8(1)
    return result


# ---------------------------------------------------------------------------
# Assembling the data set.
# ---------------------------------------------------------------------------


def _allocate_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Splits `total` into integer counts proportional to `weights` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - counts), kind="stable")
    counts[remainder_order[: total - counts.sum()]] += 1
    return counts


def _split_into_groups(total: int, sizes: tuple[int, ...], rng: np.random.Generator) -> list[int]:
    """Splits `total` items into random group sizes drawn from `sizes` that add up exactly."""
    groups: list[int] = []
    remaining = total
    while remaining > 0:
        size = int(rng.choice([size for size in sizes if size <= remaining] or [remaining]))
        groups.append(size)
        remaining -= size
    return groups


@dataclass
class _PlantPlan:
    """How many images of each planted kind to make for a data set."""

    cross_class_copies_per_class: int
    within_class_copies: int
    single_pictures: int
    exact_extras: int
    near_extras: int
    conflicting_members: int

    @property
    def out_of_distribution(self) -> int:
        return self.cross_class_copies_per_class * len(CLASS_NAMES) + self.within_class_copies + self.single_pictures

    @property
    def total(self) -> int:
        return self.out_of_distribution + self.exact_extras + self.near_extras + self.conflicting_members


def _plan_outliers(n_images: int, outlier_fraction: float) -> _PlantPlan:
    """Divides the outlier budget over the planted kinds.

    About 45 percent of the planted images are out of distribution (most of
    them the picture copied across all classes), the rest are duplicates. When
    the fraction is positive every kind is planted at least once, so for tiny
    budgets the realised fraction can be slightly above the requested one.
    """
    budget = int(round(n_images * outlier_fraction))
    if budget == 0:
        return _PlantPlan(0, 0, 0, 0, 0, 0)
    cross_per_class = max(1, int(round(budget * 0.27 / len(CLASS_NAMES))))
    within_class = max(2, int(round(budget * 0.067)))
    single = max(1, int(round(budget * 0.11)))
    remaining = max(budget - cross_per_class * len(CLASS_NAMES) - within_class - single, 0)
    exact = max(1, int(round(remaining * 0.3)))
    near = max(len(NEAR_COPY_TRANSFORMS), int(round(remaining * 0.37)))
    conflicting = max(2, remaining - exact - near)
    return _PlantPlan(cross_per_class, within_class, single, exact, near, conflicting)


def make_synthetic_dataset(n_images: int = 2000, seed: int = 0, outlier_fraction: float = 0.12) -> SyntheticDataset:
    """Makes the seeded synthetic data set with planted outliers.

    Args:
        n_images: Total number of images, at least 200.
        seed: Seed of the random generator; the same seed gives byte-identical
            images, labels and ground truth.
        outlier_fraction: Fraction of images that a correct cleaning should
            drop, between 0 and 0.3.

    Returns:
        A `SyntheticDataset`.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)):
        raise ValueError(f"n_images must be an integer, got {n_images!r}.")
    if n_images < MINIMUM_IMAGES:
        raise ValueError(
            f"n_images must be at least {MINIMUM_IMAGES} so that every class and every kind of "
            f"planted outlier fits, got {n_images}."
        )
    try:
        outlier_fraction = float(outlier_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"outlier_fraction must be a number, got {outlier_fraction!r}.") from None
    if not np.isfinite(outlier_fraction) or not 0.0 <= outlier_fraction <= MAXIMUM_OUTLIER_FRACTION:
        raise ValueError(
            f"outlier_fraction must be a number between 0 and {MAXIMUM_OUTLIER_FRACTION}, "
            f"got {outlier_fraction!r}."
        )
    n_images = int(n_images)
    rng = np.random.default_rng(seed)
    class_count = len(CLASS_NAMES)
    plan = _plan_outliers(n_images, outlier_fraction)

    # Group structure of the duplicates. Same-label groups have one source
    # cell (kept) and one to three extras; conflicting groups have a source and
    # one or two copies with other labels, and all their members are dropped.
    same_label_extra_kinds = ["identical"] * plan.exact_extras + [
        NEAR_COPY_TRANSFORMS[index % len(NEAR_COPY_TRANSFORMS)] for index in range(plan.near_extras)
    ]
    rng.shuffle(same_label_extra_kinds)
    same_label_group_sizes = _split_into_groups(len(same_label_extra_kinds), (1, 1, 2, 3), rng)
    conflicting_group_sizes = _split_into_groups(plan.conflicting_members, (2, 2, 3), rng)
    if conflicting_group_sizes and conflicting_group_sizes[-1] == 1:
        # A conflicting group needs at least two members.
        conflicting_group_sizes[-2] += 1
        conflicting_group_sizes.pop()

    copy_count = len(same_label_extra_kinds) + sum(size - 1 for size in conflicting_group_sizes)
    cell_count = n_images - plan.out_of_distribution - copy_count
    cell_labels = np.repeat(np.arange(class_count), _allocate_counts(cell_count, np.array(REAL_CLASS_COUNTS)))
    rng.shuffle(cell_labels)
    cell_images = render_cells(cell_labels, rng)

    # Every image is described by an item: its picture, its label and the
    # planted group it belongs to. Positions are assigned at the end.
    item_images: list[np.ndarray] = list(cell_images)
    item_labels: list[int] = [int(label) for label in cell_labels]
    item_reasons: list[str | None] = [None] * cell_count
    item_transforms: list[str] = [""] * cell_count
    groups: list[list[int]] = []  # Item ids; the first one is the source.

    def add_item(image: np.ndarray, label: int, reason: str, transform: str) -> int:
        item_images.append(image)
        item_labels.append(int(label))
        item_reasons.append(reason)
        item_transforms.append(transform)
        return len(item_images) - 1

    # Sources of duplicate groups are distinct clean cells.
    source_ids = rng.choice(cell_count, size=len(same_label_group_sizes) + len(conflicting_group_sizes), replace=False)
    same_label_sources = source_ids[: len(same_label_group_sizes)]
    conflicting_sources = source_ids[len(same_label_group_sizes) :]

    extra_position = 0
    for source, size in zip(same_label_sources, same_label_group_sizes):
        group = [int(source)]
        for transform in same_label_extra_kinds[extra_position : extra_position + size]:
            copy = apply_near_copy_transform(cell_images[source], transform, rng)
            reason = "exact copy" if transform == "identical" else "near copy"
            group.append(add_item(copy, cell_labels[source], reason, transform))
        extra_position += size
        groups.append(group)

    for source, size in zip(conflicting_sources, conflicting_group_sizes):
        source = int(source)
        item_reasons[source] = "conflicting-label duplicate"
        item_transforms[source] = "identical"
        group = [source]
        other_labels = rng.permutation([label for label in range(class_count) if label != cell_labels[source]])
        for copy_number in range(size - 1):
            transform = str(rng.choice(("identical", "identical") + NEAR_COPY_TRANSFORMS))
            copy = apply_near_copy_transform(cell_images[source], transform, rng)
            group.append(add_item(copy, other_labels[copy_number], "conflicting-label duplicate", transform))
        groups.append(group)

    # Out-of-distribution pictures. The cross-class picture is a cartoon face
    # (the challenge's equivalent is a cat), the within-class one a collage of
    # shapes, and the single pictures cycle through all kinds.
    if plan.out_of_distribution:
        cross_picture = make_non_cell_picture("face", rng)
        group = []
        for label in range(class_count):
            for _ in range(plan.cross_class_copies_per_class):
                group.append(add_item(cross_picture, label, "out of distribution", ""))
        groups.append(group)
        within_picture = make_non_cell_picture("shapes", rng)
        within_label = int(rng.integers(0, class_count))
        groups.append(
            [add_item(within_picture, within_label, "out of distribution", "") for _ in range(plan.within_class_copies)]
        )
        kinds = list(NON_CELL_PICTURE_KINDS)
        for index in range(plan.single_pictures):
            picture = make_non_cell_picture(kinds[index % len(kinds)], rng)
            add_item(picture, int(rng.integers(0, class_count)), "out of distribution", "")

    # Shuffle, then give the source of every group the lowest position among
    # the group's positions so that "keep the lowest index" keeps the source.
    item_count = len(item_images)
    assert item_count == n_images, "internal error: item count does not match n_images"
    positions = rng.permutation(item_count)
    group_of_item = np.full(item_count, -1, dtype=np.int64)
    for group_id, group in enumerate(groups):
        positions[group] = np.sort(positions[group])
        group_of_item[group] = group_id

    images = np.empty((item_count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty(item_count, dtype=np.int64)
    images[positions] = np.stack(item_images)
    labels[positions] = np.array(item_labels, dtype=np.int64)

    source_position = np.full(item_count, -1, dtype=np.int64)
    for group in groups:
        source_position[group[1:]] = positions[group[0]]

    rows = [
        {
            "index": int(positions[item]),
            "reason": item_reasons[item],
            "source_index": int(source_position[item]),
            "transform": item_transforms[item],
            "group": int(group_of_item[item]),
        }
        for item in range(item_count)
        if item_reasons[item] is not None
    ]
    planted = pd.DataFrame(rows, columns=list(PLANTED_COLUMNS))
    planted = planted.astype({"index": np.int64, "source_index": np.int64, "group": np.int64})
    planted = planted.sort_values("index", kind="stable").reset_index(drop=True)
    return SyntheticDataset(images=images, labels=labels, planted=planted)


def make_preview_grid(dataset: SyntheticDataset, samples_per_class: int = 8, seed: int = 0) -> np.ndarray:
    """Tiles kept cells (one row per class) and a row of planted outliers.

    Args:
        dataset: The data set to preview.
        samples_per_class: Pictures per row.
        seed: Seed that picks the pictures.

    Returns:
        A `uint8` RGB array that can be saved with PIL or shown with matplotlib.
    """
    rng = np.random.default_rng(seed)
    keep = dataset.keep_mask
    blank = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.uint8)
    rows = []
    for label in range(len(CLASS_NAMES)):
        candidates = np.flatnonzero(keep & (dataset.labels == label))
        chosen = rng.choice(candidates, size=min(samples_per_class, len(candidates)), replace=False)
        tiles = [dataset.images[index] for index in chosen]
        tiles += [blank] * (samples_per_class - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    # A row of planted outliers: the first image of up to two out-of-distribution
    # groups, single pictures, and then one duplicate of each transform.
    planted = dataset.planted
    out_of_distribution = planted[planted["reason"] == "out of distribution"]
    repeated = out_of_distribution[out_of_distribution["group"] >= 0].drop_duplicates("group")
    single = out_of_distribution[out_of_distribution["group"] < 0]
    chosen_rows = [row for _, row in repeated.iterrows()] + [row for _, row in single.head(2).iterrows()]
    for transform in ("identical",) + NEAR_COPY_TRANSFORMS:
        matching = planted[(planted["transform"] == transform) & (planted["source_index"] >= 0)]
        if len(matching):
            chosen_rows.append(matching.iloc[0])
    outlier_tiles = [dataset.images[int(row["index"])] for row in chosen_rows]
    outlier_tiles = (outlier_tiles + [blank] * samples_per_class)[:samples_per_class]
    rows.append(np.concatenate(outlier_tiles, axis=1))
    return np.concatenate(rows, axis=0)
