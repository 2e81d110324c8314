"""Drawing primitives of the synthetic pictures, on one 96x96 coordinate grid.

Shapes are described by signed distances (positive inside, in pixels) so that
unions, intersections and cut-outs are simple maxima and minima, and edges are
anti-aliased by a soft clip.  Every function works on whole float32 images in
[0, 1] with vectorised numpy operations, drawing from the caller's
`numpy.random.Generator` so that a seed fixes the output.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from utils.config import INPUT_SIZE

# The coordinate grid shared by all drawing functions: row (y) and column (x)
# of every pixel, as float32 so that the arithmetic stays fast.
GRID_Y, GRID_X = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE].astype(np.float32)


def soft_alpha(signed_distance: np.ndarray, softness: float = 0.8) -> np.ndarray:
    """Turns a signed distance (positive inside) into an anti-aliased opacity."""
    return np.clip(signed_distance / softness + 0.5, 0.0, 1.0)


def blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paints `colour` over `image` with the per-pixel opacity `alpha`."""
    alpha = alpha.astype(np.float32, copy=False)[..., None]
    colour = np.asarray(colour, dtype=np.float32)
    return image * (1.0 - alpha) + colour * alpha


def blob_distance(
    centre_x: float,
    centre_y: float,
    radius: float,
    aspect: float,
    *,
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


def circle_distance(centre_x: float, centre_y: float, radius: float) -> np.ndarray:
    """Signed distance of a circle."""
    return float(radius) - np.sqrt((GRID_X - float(centre_x)) ** 2 + (GRID_Y - float(centre_y)) ** 2)


def segment_distance(start: tuple[float, float], end: tuple[float, float], half_width: float) -> np.ndarray:
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


def random_blob(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    radius: float,
    *,
    aspect: float,
    angle: float,
    roughness: float,
) -> np.ndarray:
    """Signed distance of a blob with random outline harmonics of given roughness."""
    harmonics = rng.normal(0.0, roughness, size=4) / np.arange(1, 5)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=4)
    return blob_distance(centre_x, centre_y, radius, aspect, angle=angle, harmonics=harmonics, phases=phases)


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal((INPUT_SIZE, INPUT_SIZE)).astype(np.float32), sigma, mode="wrap")
    return noise / (noise.std() + 1e-6)


def granule_field(
    rng: np.random.Generator,
    centre_x: float,
    centre_y: float,
    radius: float,
    *,
    count: int,
    granule_sigma: float,
) -> np.ndarray:
    """Opacity in [0, 1] of `count` round granules scattered over a disc.

    Granule centres are splatted into a grid and blurred, which is much
    cheaper than measuring the distance from every pixel to every granule.
    """
    field = np.zeros((INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    if count <= 0:
        return field
    distance = radius * np.sqrt(rng.uniform(0.0, 1.0, size=count))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    rows = np.clip(np.round(centre_y + distance * np.sin(angle)), 0, INPUT_SIZE - 1).astype(int)
    columns = np.clip(np.round(centre_x + distance * np.cos(angle)), 0, INPUT_SIZE - 1).astype(int)
    np.add.at(field, (rows, columns), 1.0)
    field = ndimage.gaussian_filter(field, granule_sigma)
    peak = 1.0 / (2.0 * np.pi * granule_sigma**2)
    return np.clip(field / (0.55 * peak), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Converts a float image in [0, 1] to `uint8` with rounding."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
