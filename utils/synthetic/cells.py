"""The cell renderer: one clean 96x96 picture of a blood cell of a given class.

Each picture is a pale smear with red blood cells (`utils.synthetic.smear`),
the white cell of the class (or platelet fragments) at the
centre, stain and camera variation, and mild JPEG artefacts like the
challenge's files.  The classes share one stain palette and one distribution
of stain, blur and noise, so colour alone does not separate them; they differ
in shape and texture the way real cells do (number and shape of nuclear lobes,
granules, vacuoles, cell size), blended towards a neighbouring class by a
per-cell typicality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from utils.config import CLASS_NAMES
from utils.synthetic.drawing import (
    INPUT_SIZE,
    blend,
    circle_distance,
    granule_field,
    random_blob,
    segment_distance,
    smooth_noise,
    soft_alpha,
    to_uint8,
)
from utils.synthetic.modifications import jpeg_round_trip
from utils.synthetic.smear import draw_background, stain_and_camera

# Base colours, RGB in [0, 1], before the per-image stain variation.
NUCLEUS_COLOUR = np.array([0.40, 0.24, 0.60], dtype=np.float32)
DENSE_NUCLEUS_COLOUR = np.array([0.30, 0.16, 0.50], dtype=np.float32)
PALE_NUCLEUS_COLOUR = np.array([0.50, 0.34, 0.68], dtype=np.float32)

# Shape parameters of the Beta distribution of a cell's typicality (0: looks
# like a neighbouring class, 1: textbook). It sets how much the classes overlap.
TYPICALITY_BETA = (1.6, 1.0)


def _blob(rng: np.random.Generator, centre_x: float, centre_y: float, radius: float, min_aspect: float, roughness: float) -> np.ndarray:
    """A `random_blob` with an aspect ratio drawn between `min_aspect` and 1 and a random orientation."""
    return random_blob(
        rng, centre_x, centre_y, radius, aspect=rng.uniform(min_aspect, 1.0), angle=rng.uniform(0.0, np.pi), roughness=roughness
    )


def _point_around(rng: np.random.Generator, centre_x: float, centre_y: float, distance: float) -> tuple[float, float]:
    """A point at `distance` from the centre in a random direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return centre_x + distance * math.cos(angle), centre_y + distance * math.sin(angle)


def _mix(atypical, typical, typicality: float) -> np.ndarray:
    """Interpolates from an atypical appearance (typicality 0) to the textbook one (1)."""
    atypical = np.asarray(atypical, dtype=np.float32)
    typical = np.asarray(typical, dtype=np.float32)
    return atypical + (typical - atypical) * np.float32(typicality)


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


@dataclass
class _Cell:
    """Where a white cell's body and nucleus are, how big it is, and how typical (see `_draw_white_cell`)."""

    centre_x: float
    centre_y: float
    radius: float
    alpha: np.ndarray  # Opacity of the cell body.
    nucleus_x: float
    nucleus_y: float
    typicality: float


def _round_nucleus(rng: np.random.Generator, cell: _Cell, radius: float, min_aspect: float, roughness: float) -> np.ndarray:
    """Signed distance of a roundish nucleus of `radius` pixels at the cell's nucleus position."""
    return _blob(rng, cell.nucleus_x, cell.nucleus_y, radius, min_aspect, roughness)


def _lobed_nucleus(rng: np.random.Generator, cell: _Cell, lobe_count: int, lobe_size: tuple[float, float], spread: float) -> np.ndarray:
    """Signed distance of a segmented nucleus: lobes joined by thin strands.

    The lobe radius is drawn from `lobe_size` (a range, in cell radii); the
    lobes sit `spread` cell radii from the nucleus position.
    """
    lobe_radius = cell.radius * rng.uniform(*lobe_size)
    start_angle = rng.uniform(0.0, 2.0 * np.pi)
    arc = rng.uniform(0.9, 1.5) * np.pi if lobe_count > 2 else np.pi
    lobe_angles = start_angle + np.linspace(0.0, arc, lobe_count) + rng.normal(0, 0.15, lobe_count)
    orbit = spread * cell.radius * rng.uniform(0.85, 1.1, size=lobe_count)
    lobe_x = cell.nucleus_x + orbit * np.cos(lobe_angles)
    lobe_y = cell.nucleus_y + orbit * np.sin(lobe_angles)
    distance = None
    for index in range(lobe_count):
        lobe = _blob(rng, lobe_x[index], lobe_y[index], lobe_radius * rng.uniform(0.85, 1.15), 0.7, 0.12)
        distance = lobe if distance is None else np.maximum(distance, lobe)
        if index > 0:
            strand = segment_distance(
                (lobe_x[index - 1], lobe_y[index - 1]),
                (lobe_x[index], lobe_y[index]),
                rng.uniform(0.6, 1.3),
            )
            distance = np.maximum(distance, strand)
    return distance


def _indented_nucleus(
    rng: np.random.Generator,
    cell: _Cell,
    size: tuple[float, float],
    aspect: tuple[float, float],
    depth: tuple[float, float],
    bite: tuple[float, float],
    depth_shift: float = 0.0,
) -> np.ndarray:
    """Signed distance of an oval nucleus with a bite taken out of one side, at the cell's nucleus position.

    A shallow bite gives the indented nucleus of immature granulocytes, a deep
    one the kidney-shaped or folded nucleus of monocytes.  Drawn uniformly from
    ranges, in this order: the radius (`size`, in cell radii), the aspect
    ratio, the bite's depth (`depth`, plus `depth_shift`) and the bite's
    radius (`bite`, in nucleus radii).
    """
    radius = cell.radius * rng.uniform(*size)
    aspect = rng.uniform(*aspect)
    indentation_depth = depth_shift + rng.uniform(*depth)
    indentation_radius = rng.uniform(*bite)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    body = random_blob(rng, cell.nucleus_x, cell.nucleus_y, radius, aspect=aspect, angle=angle, roughness=0.1)
    # The bite sits on the long side of the oval, pointing inwards.
    bite_angle = angle + np.pi / 2.0
    bite_offset = radius * aspect * (1.0 + indentation_radius - indentation_depth)
    bite_distance = circle_distance(
        cell.nucleus_x + bite_offset * np.cos(bite_angle),
        cell.nucleus_y + bite_offset * np.sin(bite_angle),
        radius * indentation_radius,
    )
    return np.minimum(body, -bite_distance)


def _paint_nucleus(
    image: np.ndarray,
    rng: np.random.Generator,
    distance: np.ndarray,
    colour: np.ndarray,
    texture_strength: float,
    opacity: float = 0.95,
) -> np.ndarray:
    """Paints a nucleus with clumpy chromatin texture."""
    alpha = soft_alpha(distance, 0.9)
    chromatin = smooth_noise(rng, rng.uniform(0.9, 1.6))
    shading = 1.0 + float(texture_strength) * chromatin
    textured = np.clip(np.asarray(colour, dtype=np.float32) * shading[..., None], 0.0, 1.0)
    alpha = alpha * float(opacity)
    return image * (1.0 - alpha[..., None]) + textured * alpha[..., None]


def _paint_granules(
    image: np.ndarray, rng: np.random.Generator, cell: _Cell, count: int, size: float, colour: np.ndarray, opacity: float
) -> np.ndarray:
    """Scatters granules of one colour over the cell body."""
    granules = granule_field(rng, cell.centre_x, cell.centre_y, cell.radius * 0.9, count=count, granule_sigma=size)
    return blend(image, colour, granules * (float(opacity) * cell.alpha))


# What each class draws inside the cell body (granules, vacuoles, the nucleus), one function per class.


def _neutrophil(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """Faint neutral granules and three to five lobes; atypical ones are band forms (a curved
    unsegmented nucleus) or have only two lobes."""
    image = _paint_granules(image, rng, cell, int(rng.integers(20, 80)), 0.6, np.array([0.76, 0.60, 0.74]), 0.35)
    band_form = rng.uniform() > 0.35 + 0.65 * cell.typicality
    if band_form:
        distance = _indented_nucleus(rng, cell, size=(0.5, 0.62), aspect=(0.45, 0.65), depth=(0.45, 0.75), bite=(0.45, 0.6))
    else:
        lobe_count = int(rng.choice([2, 3, 3, 4, 4, 5])) if cell.typicality < 0.5 else int(rng.choice([3, 3, 4, 4, 5]))
        distance = _lobed_nucleus(rng, cell, lobe_count, lobe_size=(0.24, 0.32), spread=0.4)
    return _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12)


def _eosinophil(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """Coarse granules, orange-red in typical cells and duller in atypical ones, fill the
    cytoplasm; the nucleus has two (sometimes three) lobes."""
    granule_colour = _mix([0.78, 0.56, 0.66], [0.88, 0.45, 0.36], cell.typicality)
    granule_count = int(_mix(30.0, 150.0, cell.typicality) * rng.uniform(0.7, 1.2))
    image = _paint_granules(image, rng, cell, granule_count, 0.95, granule_colour, 0.8)
    lobe_count = int(rng.choice([2, 2, 2, 3]))
    distance = _lobed_nucleus(rng, cell, lobe_count, lobe_size=(0.27, 0.34), spread=0.42)
    return _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12)


def _basophil(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """A lobed or irregular nucleus hidden under coarse dark granules; sparsely granulated cells
    show more of the nucleus."""
    distance = _round_nucleus(rng, cell, cell.radius * rng.uniform(0.5, 0.7), 0.7, 0.25)
    image = _paint_nucleus(image, rng, distance, NUCLEUS_COLOUR, 0.12, opacity=0.85)
    granule_count = int(_mix(20.0, 120.0, cell.typicality) * rng.uniform(0.7, 1.2))
    return _paint_granules(image, rng, cell, granule_count, 0.9, np.array([0.24, 0.12, 0.38]), 0.85)


def _lymphocyte(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """A large round dense nucleus leaving only a thin rim of blue cytoplasm; atypical (large)
    lymphocytes have more cytoplasm."""
    radius = cell.radius * float(_mix(0.62, 0.84, cell.typicality)) * rng.uniform(0.92, 1.06)
    distance = _round_nucleus(rng, cell, radius, 0.82, 0.08)
    return _paint_nucleus(image, rng, distance, DENSE_NUCLEUS_COLOUR * 1.1, 0.14)


def _monocyte(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """Greyish cytoplasm with vacuoles around a large folded, kidney-shaped nucleus; atypical
    ones have few vacuoles and a shallower fold."""
    vacuole_count = int(rng.integers(0, 3) + round(7 * cell.typicality * rng.uniform(0.4, 1.0)))
    for _ in range(vacuole_count):
        vacuole_x, vacuole_y = _point_around(rng, cell.centre_x, cell.centre_y, rng.uniform(0.3, 0.8) * cell.radius)
        vacuole = circle_distance(vacuole_x, vacuole_y, rng.uniform(0.9, 2.2))
        image = blend(image, np.array([0.93, 0.91, 0.94]), soft_alpha(vacuole) * 0.7)
    depth_shift = float(_mix(0.2, 0.5, cell.typicality))
    distance = _indented_nucleus(rng, cell, (0.55, 0.68), (0.6, 0.82), (-0.08, 0.1), (0.35, 0.5), depth_shift=depth_shift)
    return _paint_nucleus(image, rng, distance, PALE_NUCLEUS_COLOUR * 0.92, 0.1)


def _ig(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """Fine lilac granules and a large oval nucleus with a shallow indentation; atypical ones
    are deeply indented like monocytes."""
    granule_count = int(_mix(40.0, 200.0, cell.typicality) * rng.uniform(0.7, 1.2))
    image = _paint_granules(image, rng, cell, granule_count, 0.55, np.array([0.66, 0.46, 0.70]), 0.55)
    depth_shift = float(_mix(0.45, 0.18, cell.typicality))
    distance = _indented_nucleus(rng, cell, (0.58, 0.72), (0.68, 0.9), (-0.08, 0.08), (0.3, 0.45), depth_shift=depth_shift)
    return _paint_nucleus(image, rng, distance, PALE_NUCLEUS_COLOUR * 0.9, 0.1)


def _erythroblast(image: np.ndarray, rng: np.random.Generator, cell: _Cell) -> np.ndarray:
    """A small, very dense, round nucleus; atypical ones are larger with a less condensed
    nucleus, like a lymphocyte."""
    radius = cell.radius * float(_mix(0.72, 0.58, cell.typicality)) * rng.uniform(0.88, 1.12)
    distance = _round_nucleus(rng, cell, radius, 0.9, 0.04)
    nucleus_colour = _mix(DENSE_NUCLEUS_COLOUR * 1.1, DENSE_NUCLEUS_COLOUR * 0.85, cell.typicality)
    return _paint_nucleus(image, rng, distance, nucleus_colour, 0.08, opacity=0.97)


_DRAW_INTERIOR = {
    "neutrophil": _neutrophil,
    "eosinophil": _eosinophil,
    "basophil": _basophil,
    "lymphocyte": _lymphocyte,
    "monocyte": _monocyte,
    "ig": _ig,
    "erythroblast": _erythroblast,
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

    cell_distance = random_blob(rng, centre_x, centre_y, cell_radius, aspect=rng.uniform(0.82, 1.0), angle=cell_angle, roughness=0.06)
    cell_alpha = soft_alpha(cell_distance, 1.0)
    image = blend(image, cytoplasm_colour, cell_alpha * rng.uniform(0.82, 0.95))

    # The nucleus may sit a little off the cell centre.
    nucleus_x, nucleus_y = _point_around(rng, centre_x, centre_y, rng.uniform(0.0, 0.14) * cell_radius)
    cell = _Cell(centre_x, centre_y, cell_radius, cell_alpha, nucleus_x, nucleus_y, t)
    return _DRAW_INTERIOR[class_name](image, rng, cell)


def _draw_platelets(image: np.ndarray, rng: np.random.Generator, centre_x: float, centre_y: float, typicality: float = 1.0) -> np.ndarray:
    """Draws one to three small granular purple platelet fragments near the centre.

    Atypical platelets form a bigger clump that can be mistaken for a small nucleus.
    """
    fragment_count = int(rng.choice([1, 1, 2, 2, 3]))
    for index in range(fragment_count):
        fragment_x, fragment_y = _point_around(rng, centre_x, centre_y, 0.0 if index == 0 else rng.uniform(5.0, 11.0))
        if index == 0:
            radius = float(_mix(rng.uniform(5.0, 8.0), rng.uniform(3.5, 6.0), typicality))
        else:
            radius = rng.uniform(2.0, 4.0)
        distance = _blob(rng, fragment_x, fragment_y, radius, 0.6, 0.3)
        # A pale lilac halo with a dark granular centre.
        image = blend(image, np.array([0.72, 0.62, 0.82]), soft_alpha(distance + 1.0) * 0.6)
        image = _paint_nucleus(image, rng, distance - 0.8, NUCLEUS_COLOUR, 0.3, opacity=0.9)
    return image


def _render_one_cell(label: int, rng: np.random.Generator) -> np.ndarray:
    """Renders one clean picture of class `label` as a `uint8` array."""
    centre_x = INPUT_SIZE / 2.0 + rng.normal(0.0, 2.5)
    centre_y = INPUT_SIZE / 2.0 + rng.normal(0.0, 2.5)
    image = draw_background(rng)
    # Now and then part of another white cell shows at the edge of the field,
    # for every class alike, as in real smears.
    if rng.uniform() < 0.08:
        edge_angle = rng.uniform(0.0, 2.0 * np.pi)
        image = _draw_white_cell(
            image,
            int(rng.integers(0, 7)),
            rng,
            INPUT_SIZE / 2.0 + 50.0 * np.cos(edge_angle),
            INPUT_SIZE / 2.0 + 50.0 * np.sin(edge_angle),
        )
    # How textbook-like this cell looks: most cells are typical, a minority
    # drift towards a neighbouring class (see `_draw_white_cell`).
    typicality = float(rng.beta(TYPICALITY_BETA[0], TYPICALITY_BETA[1]))
    if CLASS_NAMES[label] == "platelet":
        image = _draw_platelets(image, rng, centre_x, centre_y, typicality)
    else:
        image = _draw_white_cell(image, label, rng, centre_x, centre_y, typicality)
    image = stain_and_camera(image, rng)
    # The challenge pictures are JPEG files, so the clean cells carry mild
    # JPEG artefacts too.
    return jpeg_round_trip(to_uint8(image), int(rng.integers(88, 96)))


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
    images = np.empty((len(labels), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    for position, label in enumerate(labels):
        images[position] = _render_one_cell(int(label), rng)
    return images
