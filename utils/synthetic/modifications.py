"""Near-copy modifications of a picture: re-encoded, shifted, re-coloured, cropped.

The one source of near copies for the synthetic data set, the outlier tests
and the contamination benchmark.  Each modification keeps the content of the
picture but changes its bytes the way copies in dirty data sets change:

* "re-encoded": saved as JPEG at quality 50-90 and decoded again;
* "shifted": moved by 3 to 10 pixels along at least one axis, the edge pixels
  filling the uncovered border;
* "re-coloured": hue rotated by 8-25 degrees (in YIQ space, which keeps the
  brightness channel), contrast changed by up to 20 percent and brightness by
  3-10 percent;
* "cropped": a random 70-95 percent crop resized back with bilinear
  interpolation.

The parameters are drawn from the caller's `numpy.random.Generator`, so a seed
fixes the copy.  The near-copy detector in `utils.outliers` must find all four.

Example:

```python
rng = np.random.default_rng(0)
copy = make_near_copy(image, "re-coloured", rng)
```
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from utils.synthetic.drawing import to_uint8

NEAR_COPY_MODIFICATIONS = ("re-encoded", "shifted", "re-coloured", "cropped")

# YIQ colour space: luma (Y) and two chroma axes; a rotation of the chroma
# plane changes the hue and leaves the brightness alone.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encodes a `uint8` RGB image as JPEG with PIL at the given quality and decodes it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def reencode(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encodes an image as JPEG at a random quality from 50 to 90."""
    return jpeg_round_trip(image, int(rng.integers(50, 91)))


def shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shifts an image by up to 10 pixels (at least 3 along one axis), padding with the edge pixels."""
    height, width = image.shape[:2]
    shift_y, shift_x = 0, 0
    while max(abs(shift_y), abs(shift_x)) < 3:
        shift_y, shift_x = (int(value) for value in rng.integers(-10, 11, size=2))
    pad = 10
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    top, left = pad - shift_y, pad - shift_x
    return padded[top : top + height, left : left + width].copy()


def recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Changes hue, brightness and contrast of an image noticeably but moderately."""
    pixels = image.astype(np.float32) / 255.0
    yiq = pixels @ _RGB_TO_YIQ.T
    hue_angle = rng.choice([-1.0, 1.0]) * rng.uniform(np.deg2rad(8.0), np.deg2rad(25.0))
    cosine, sine = np.cos(hue_angle), np.sin(hue_angle)
    in_phase = yiq[..., 1] * cosine - yiq[..., 2] * sine
    quadrature = yiq[..., 1] * sine + yiq[..., 2] * cosine
    yiq = np.stack([yiq[..., 0], in_phase, quadrature], axis=-1)
    pixels = yiq @ np.linalg.inv(_RGB_TO_YIQ).T.astype(np.float32)
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.1)
    mean = pixels.mean()
    pixels = (pixels - mean) * contrast + mean + brightness
    return to_uint8(np.clip(pixels, 0.0, 1.0))


def crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crops 70 to 95 percent of each side of an image and resizes it back with PIL."""
    height, width = image.shape[:2]
    fraction = rng.uniform(0.70, 0.95)
    crop_height, crop_width = int(round(height * fraction)), int(round(width * fraction))
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    cropped = Image.fromarray(image[top : top + crop_height, left : left + crop_width])
    return np.array(cropped.resize((width, height), Image.BILINEAR), dtype=np.uint8)


_MODIFY = {"re-encoded": reencode, "shifted": shift, "re-coloured": recolour, "cropped": crop}


def make_near_copy(image: np.ndarray, modification: str, rng: np.random.Generator) -> np.ndarray:
    """Makes a near copy of `image` with one of `NEAR_COPY_MODIFICATIONS`.

    Args:
        image: A `uint8` RGB array of shape (H, W, 3).
        modification: "re-encoded", "shifted", "re-coloured" or "cropped".
        rng: The random generator that draws the modification's parameters.

    Returns:
        The modified `uint8` image of the same shape; never byte-identical to
        the input.
    """
    if modification not in _MODIFY:
        raise ValueError(f"Unknown near-copy modification {modification!r}; choose one of {', '.join(NEAR_COPY_MODIFICATIONS)}.")
    result = _MODIFY[modification](image, rng)
    if np.array_equal(result, image):
        # Practically impossible, but a near copy must never be an exact copy.
        result = result.copy()
        result[0, 0] = result[0, 0] ^ np.uint8(1)
    return result
