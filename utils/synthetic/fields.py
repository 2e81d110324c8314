"""Smear fields from another microscope: several cells at another scale and stain in one image.

A data set of single-cell crops can also hold crops of a whole blood-smear
field taken with another microscope: several cells, smaller (another
magnification or camera), stained and lit differently.  Such an image is not
one cell and should be dropped as out of distribution.  `make_smear_fields`
builds them from any cells the caller passes (real cells of a folder, or drawn
ones for the unit tests):

1. a mosaic of cells: tiles balanced to one background colour and laid out on
   a grid with jittered positions, random flips and quarter turns, and
   feathered overlaps so that no seam shows;
2. another scale: the mosaic (or a window of it) is resized to one image, so
   the cells come out at 1/1.5 to 1/2.7 of their size and seldom centred;
3. another stain and microscope (`STAINS`): stain strength, hue and
   saturation changed on optical densities (the negative logarithm of
   transmitted light), the lamp's colour tinting the background, contrast,
   defocus blur, sensor noise and JPEG artefacts.

Layouts (`FIELD_LAYOUTS`): "2x2" and "3x3" grids resized whole (cells at
about 1/1.9 and 1/2.7 of their size), and "window", a random window of 1.5 to
2.5 tiles' side of a 4x4 mosaic (cells at 1/1.5 to 1/2.5 of their size,
anywhere, some cut at the edge).  The detectors were tuned on the "2x2"
layout with `TUNING_STAINS` only; "3x3", "window" and `HELD_OUT_STAINS`
played no part in tuning (`TUNING_LAYOUTS`, `HELD_OUT_LAYOUTS`).

Example:

```python
rng = np.random.default_rng(0)
fields = make_smear_fields(cells, 50, rng, layouts=HELD_OUT_LAYOUTS, stains=HELD_OUT_STAINS)
images = fields["images"]  # uint8 (50, 96, 96, 3)
```
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from utils.synthetic.drawing import to_uint8
from utils.synthetic.modifications import jpeg_round_trip


@dataclass(frozen=True)
class Stain:
    """Ranges of the stain and microscope parameters of one "other microscope".

    Attributes:
        stain_gains: Per-channel (R, G, B) ranges of the factor on optical
            densities; the relative factors change the stain's hue, their
            level its strength.
        saturation: Range of the factor on the optical densities' departure
            from their grey (channel mean) value: below 1 greyer stains.
        lamp: Per-channel colour of the lamp (the background's colour, since
            the light is white-balanced to the background first).
        contrast: Range of the contrast factor around the mean.
        blur: Range of the Gaussian defocus sigma, in output pixels.
    """

    stain_gains: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    saturation: tuple[float, float]
    lamp: tuple[float, float, float]
    contrast: tuple[float, float]
    blur: tuple[float, float]


STAINS = {
    # A more basophilic (bluer) stain under a cool lamp.
    "blue": Stain(((1.2, 1.5), (1.0, 1.2), (0.6, 0.8)), (1.0, 1.3), (0.90, 0.95, 1.0), (0.95, 1.1), (0.3, 0.9)),
    # A more eosinophilic (redder) stain under a white lamp.
    "red": Stain(((0.6, 0.8), (1.1, 1.4), (0.9, 1.1)), (1.1, 1.4), (1.0, 0.98, 0.98), (1.0, 1.15), (0.3, 0.9)),
    # A weak, faded stain: pale, greyish cells on a grey-white background.
    "faded": Stain(((0.45, 0.65), (0.45, 0.65), (0.45, 0.65)), (0.6, 0.8), (0.94, 0.94, 0.95), (0.8, 0.95), (0.5, 1.2)),
    # The usual stain under a tungsten lamp without white balance: yellow background.
    "tungsten": Stain(((0.9, 1.1), (0.9, 1.1), (0.9, 1.1)), (0.9, 1.1), (1.0, 0.88, 0.66), (0.9, 1.05), (0.3, 0.9)),
}
TUNING_STAINS = ("blue", "red")
HELD_OUT_STAINS = ("faded", "tungsten")

FIELD_LAYOUTS = ("2x2", "3x3", "window")
TUNING_LAYOUTS = ("2x2",)
HELD_OUT_LAYOUTS = ("3x3", "window")

# Tiles overlap by this fraction of their side; the overlap is feathered.
TILE_OVERLAP = 0.25


def _feather(size: int, ramp: int) -> np.ndarray:
    """A 1-D weight that rises from almost 0 to 1 over `ramp` pixels at both ends."""
    weight = np.ones(size, dtype=np.float32)
    rise = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    weight[:ramp] = rise
    weight[size - ramp :] = rise[::-1]
    return weight


def mosaic(tiles: np.ndarray, per_side: int, rng: np.random.Generator) -> np.ndarray:
    """Lays `per_side` x `per_side` tiles out on a grid with feathered overlaps.

    Args:
        tiles: uint8 array `(per_side**2, S, S, 3)`.
        per_side: Tiles along each side.
        rng: Draws the flips, quarter turns and position jitter.

    Returns:
        float32 array in [0, 1] of shape `(side, side, 3)`, `side` about
        `per_side * S * (1 - TILE_OVERLAP)`.
    """
    size = tiles.shape[1]
    overlap = int(round(size * TILE_OVERLAP))
    step = size - overlap
    jitter = overlap // 3
    side = step * per_side + overlap + 2 * jitter
    canvas = np.zeros((side, side, 3), dtype=np.float32)
    weights = np.zeros((side, side, 1), dtype=np.float32)
    feather = _feather(size, overlap)
    window = (feather[:, None] * feather[None, :])[..., None]
    # One microscope lights the whole field alike: every tile is balanced to the
    # mean background (90th percentile per channel) of the tiles.
    tiles = tiles.astype(np.float32) / 255.0
    whites = np.quantile(tiles.reshape(len(tiles), -1, 3), 0.9, axis=1)
    tiles = tiles * (whites.mean(axis=0) / np.maximum(whites, 1e-3))[:, None, None, :]
    for index, tile in enumerate(tiles):
        tile = np.rot90(tile, int(rng.integers(4)))
        if rng.uniform() < 0.5:
            tile = tile[:, ::-1]
        row, column = divmod(index, per_side)
        top = jitter + row * step + int(rng.integers(-jitter, jitter + 1))
        left = jitter + column * step + int(rng.integers(-jitter, jitter + 1))
        canvas[top : top + size, left : left + size] += window * tile
        weights[top : top + size, left : left + size] += window
    # Corners that no tile covers (jitter) take the mean colour of the mosaic.
    covered = weights[..., 0] > 1e-3
    canvas[covered] /= weights[covered]
    canvas[~covered] = canvas[covered].mean(axis=0)
    return canvas


def restain(image: np.ndarray, stain: Stain, rng: np.random.Generator) -> np.ndarray:
    """Turns a float RGB image in [0, 1] into one from another stain and microscope (float, unclipped).

    The light is white-balanced to the background (each channel's 90th
    percentile), the optical densities of the stains are scaled per channel
    and in saturation, and the result is lit by the other lamp.
    """
    white = np.quantile(image.reshape(-1, 3), 0.9, axis=0)
    optical_density = -np.log(np.clip(image / np.maximum(white, 1e-3), 1e-3, 1.0))
    gains = np.array([rng.uniform(*bounds) for bounds in stain.stain_gains], dtype=np.float32)
    optical_density = optical_density * gains
    grey = optical_density.mean(axis=-1, keepdims=True)
    optical_density = grey + float(rng.uniform(*stain.saturation)) * (optical_density - grey)
    lamp = np.array(stain.lamp, dtype=np.float32) * rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    image = np.exp(-np.maximum(optical_density, 0.0)) * lamp
    mean = image.mean()
    image = (image - mean) * rng.uniform(*stain.contrast) + mean
    sigma = float(rng.uniform(*stain.blur))
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0))


def make_smear_field(tiles: np.ndarray, layout: str, stain: str, rng: np.random.Generator, *, size: int = 96) -> np.ndarray:
    """Makes one smear field from the given tiles.

    Args:
        tiles: uint8 cells `(n, S, S, 3)`, `n` = 4 for "2x2", 9 for "3x3" and
            16 for "window".
        layout: One of `FIELD_LAYOUTS`.
        stain: One of `STAINS`.
        rng: Draws every parameter.
        size: Side of the output image.

    Returns:
        uint8 array `(size, size, 3)`.
    """
    per_side = _tiles_per_side(layout)
    if len(tiles) != per_side**2:
        raise ValueError(f"Layout {layout!r} needs {per_side**2} tiles, got {len(tiles)}.")
    if stain not in STAINS:
        raise ValueError(f"Unknown stain {stain!r}; choose one of {', '.join(STAINS)}.")
    field = mosaic(tiles, per_side, rng)
    if layout == "window":
        window = min(int(round(tiles.shape[1] * rng.uniform(1.5, 2.5))), len(field))
        top, left = (int(value) for value in rng.integers(0, len(field) - window + 1, size=2))
        field = field[top : top + window, left : left + window]
    resized = Image.fromarray(to_uint8(np.clip(field, 0.0, 1.0))).resize((size, size), Image.LANCZOS)
    image = restain(np.asarray(resized, dtype=np.float32) / 255.0, STAINS[stain], rng)
    image = image + float(rng.uniform(0.004, 0.015)) * rng.standard_normal(size=image.shape, dtype=np.float32)
    return jpeg_round_trip(to_uint8(np.clip(image, 0.0, 1.0)), int(rng.integers(80, 96)))


def _tiles_per_side(layout: str) -> int:
    sides = {"2x2": 2, "3x3": 3, "window": 4}
    if layout not in sides:
        raise ValueError(f"Unknown field layout {layout!r}; choose one of {', '.join(FIELD_LAYOUTS)}.")
    return sides[layout]


def make_smear_fields(cells: np.ndarray, count: int, rng: np.random.Generator, *, layouts=FIELD_LAYOUTS, stains=tuple(STAINS)) -> dict:
    """Makes `count` smear fields from tiles drawn (with replacement) from `cells`.

    The fields cycle through every (layout, stain) pair, so each pair gets
    about the same number.

    Args:
        cells: uint8 single cells `(N, S, S, 3)` to lay out as tiles.
        count: Number of fields.
        rng: Draws the tiles and every parameter; the same state gives the
            same fields.
        layouts: Layouts to use, from `FIELD_LAYOUTS`.
        stains: Stains to use, from `STAINS`.

    Returns:
        A dict with `images` (uint8 `(count, S, S, 3)`), `layouts` and
        `stains` (string arrays, one entry per field).
    """
    cells = np.asarray(cells)
    if cells.ndim != 4 or cells.dtype != np.uint8 or len(cells) == 0:
        raise ValueError("cells must be a non-empty uint8 array of shape (N, H, W, 3).")
    pairs = [(layout, stain) for layout in layouts for stain in stains]
    for layout, stain in pairs:
        _tiles_per_side(layout)
        if stain not in STAINS:
            raise ValueError(f"Unknown stain {stain!r}; choose one of {', '.join(STAINS)}.")
    images, field_layouts, field_stains = [], [], []
    for index in range(count):
        layout, stain = pairs[index % len(pairs)]
        tiles = cells[rng.integers(0, len(cells), size=_tiles_per_side(layout) ** 2)]
        images.append(make_smear_field(tiles, layout, stain, rng, size=cells.shape[1]))
        field_layouts.append(layout)
        field_stains.append(stain)
    empty = np.zeros((0, *cells.shape[1:]), dtype=np.uint8)
    return {
        "images": np.stack(images) if images else empty,
        "layouts": np.array(field_layouts, dtype=str),
        "stains": np.array(field_stains, dtype=str),
    }
