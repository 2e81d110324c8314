"""Pictures that are not blood cells, for the out-of-distribution outliers.

Two sources: procedurally drawn pictures (text, checkerboards, gradients,
faces, noise, shapes, rings) that the synthetic data set plants, and the
sample pictures that ship with scikit-image, which the contamination benchmark
and the detector tests use.  The outlier detectors were tuned on
`TUNING_PICTURES` only; `HELD_OUT_PICTURES` played no part in tuning, so
measurements of the detectors use those.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from utils.synthetic.drawing import (
    GRID_X,
    GRID_Y,
    INPUT_SIZE,
    blend,
    circle_distance,
    segment_distance,
    soft_alpha,
    to_uint8,
)

# scikit-image sample pictures the detectors were tuned on (the real data
# already hides copies of "astronaut" and "chelsea"), and the ones kept apart.
TUNING_PICTURES = ("astronaut", "chelsea", "camera", "coffee", "rocket", "coins", "checkerboard")
HELD_OUT_PICTURES = (
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "moon",
    "page",
    "text",
    "horse",
    "clock",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "logo",
    "cell",
    "microaneurysms",
    "shepp_logan_phantom",
)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated-ish RGB colour in [0, 1]."""
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _picture_text(rng: np.random.Generator) -> np.ndarray:
    """Dark 'words' in lines on light paper, like a photographed page."""
    image = np.ones((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32) * rng.uniform(0.85, 1.0)
    ink = _random_colour(rng) * 0.3
    line_height = int(rng.integers(7, 12))
    for top in range(int(rng.integers(3, 8)), INPUT_SIZE - line_height, line_height + int(rng.integers(2, 5))):
        left = int(rng.integers(3, 10))
        while left < INPUT_SIZE - 8:
            width = int(rng.integers(4, 20))
            image[top : top + line_height - 3, left : min(left + width, INPUT_SIZE - 3)] = ink
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
        position = (GRID_X * np.cos(angle) + GRID_Y * np.sin(angle)) / INPUT_SIZE
    else:
        position = np.hypot(GRID_X - rng.uniform(0, 96), GRID_Y - rng.uniform(0, 96)) / INPUT_SIZE
    position = (position - position.min()) / (np.ptp(position) + 1e-6)
    first, second = _random_colour(rng), _random_colour(rng)
    return first * (1.0 - position[..., None]) + second * position[..., None]


def _picture_face(rng: np.random.Generator) -> np.ndarray:
    """A cartoon smiley face on a coloured background."""
    image = np.broadcast_to(_random_colour(rng), (INPUT_SIZE, INPUT_SIZE, 3)).copy()
    centre_x, centre_y = 48 + rng.normal(0, 3), 48 + rng.normal(0, 3)
    radius = rng.uniform(30.0, 40.0)
    image = blend(image, np.array([0.98, 0.85, 0.15], dtype=np.float32), soft_alpha(circle_distance(centre_x, centre_y, radius)))
    for side in (-1, 1):
        eye = circle_distance(centre_x + side * radius * 0.35, centre_y - radius * 0.25, radius * 0.12)
        image = blend(image, np.zeros(3, dtype=np.float32), soft_alpha(eye))
    mouth_ring = np.minimum(circle_distance(centre_x, centre_y, radius * 0.6), -circle_distance(centre_x, centre_y, radius * 0.5))
    mouth = np.minimum(mouth_ring, GRID_Y - (centre_y + radius * 0.1))
    return blend(image, np.array([0.6, 0.1, 0.1], dtype=np.float32), soft_alpha(mouth))


def _picture_noise(rng: np.random.Generator) -> np.ndarray:
    """Colour noise, either raw or smoothed into 'plasma' clouds."""
    noise = rng.uniform(0.0, 1.0, size=(INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    if rng.uniform() < 0.5:
        noise = ndimage.gaussian_filter(noise, sigma=(rng.uniform(2.0, 8.0),) * 2 + (0.0,))
        noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    return noise


def _picture_shapes(rng: np.random.Generator) -> np.ndarray:
    """Random rectangles, discs and stripes in flat colours."""
    image = np.broadcast_to(_random_colour(rng), (INPUT_SIZE, INPUT_SIZE, 3)).copy()
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.integers(0, 3)
        colour = _random_colour(rng)
        if kind == 0:
            top, left = rng.integers(0, 80, size=2)
            height, width = rng.integers(8, 40, size=2)
            image[top : top + height, left : left + width] = colour
        elif kind == 1:
            disc = circle_distance(rng.uniform(0, 96), rng.uniform(0, 96), rng.uniform(5, 25))
            image = blend(image, colour, soft_alpha(disc))
        else:
            stripe = segment_distance(tuple(rng.uniform(0, 96, size=2)), tuple(rng.uniform(0, 96, size=2)), rng.uniform(2, 6))
            image = blend(image, colour, soft_alpha(stripe))
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
    return to_uint8(np.clip(NON_CELL_PICTURE_KINDS[kind](rng), 0.0, 1.0))


def sample_picture(name: str, size: int = INPUT_SIZE) -> np.ndarray:
    """Loads a scikit-image sample picture as a centre-cropped RGB square.

    Args:
        name: The name of a picture in `skimage.data` (e.g. one of
            `HELD_OUT_PICTURES`).
        size: Side of the square result, in pixels.

    Returns:
        A `uint8` array of shape (size, size, 3).
    """
    import skimage.data
    from PIL import Image

    if name == "stereo_motorcycle":
        array = skimage.data.stereo_motorcycle()[0]
    else:
        array = getattr(skimage.data, name)()
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = array.astype(np.float64)
        array = (255 * (array - array.min()) / (np.ptp(array) + 1e-9)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = array[..., :3]
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = array[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))
