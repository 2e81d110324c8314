"""Reading one image file as 8-bit RGB of size x size: every conversion exact and documented, anything else refused.

What each kind of file gets (docs/contracts.md, Input kinds and what each gets):

* Samples of 8 bits (greyscale, RGB, palette; PNG, JPEG, BMP, GIF, TIFF, WebP) are the pixels as stored: greyscale
  is repeated into R, G and B and a palette is looked up. Samples of fewer bits (1-, 2- and 4-bit) and of more bits
  (16-bit PNG and TIFF, greyscale or colour) are scaled to 8 bits as round(value * 255 / (2**bits - 1)), halves up:
  a 1-bit pixel becomes 0 or 255, a 16-bit one round(value / 257) (`scale_to_8_bits`).
* 32-bit integer and floating-point samples (TIFF) carry no scale: they are the pixel values 0-255 when every value
  is a whole number in 0-255 and are refused otherwise, as in the npz (`checks.pixel_values_to_uint8`).
* An alpha channel or a transparent colour is dropped only when every pixel is fully opaque; transparency is refused.
* Refused with the cause: CMYK and other colour spaces without an exact conversion to RGB, animations and
  multi-page files, empty, truncated, damaged and non-image files.
* Embedded colour profiles (ICC), gamma and EXIF orientation are not applied: the stored samples are the pixels.

Then the image is centre-cropped to a square and, unless it is size x size already, resized with Pillow's Lanczos filter.
"""

from __future__ import annotations

import os

import numpy as np

from utils import config
from utils.data import image_formats
from utils.data.checks import DataError, pixel_values_to_uint8

# Pillow's modes of 8-bit samples that are the pixels as stored (greyscale or RGB, with or without alpha).
EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA")


def read_image(path: str | os.PathLike, size: int = config.INPUT_SIZE) -> np.ndarray:
    """Reads one image as RGB uint8, centre-crops it to a square and resizes it with Lanczos to size x size."""
    return crop_and_resize(read_rgb(path), size)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Reads one image at its own size as RGB uint8 (height, width, 3), converted as the module docstring says."""
    samples, bits = read_samples(path)
    return samples_to_rgb(samples, bits=bits, source=path)


def read_samples(path) -> tuple[np.ndarray, int | None]:
    """The image's samples (height, width, channels) and the bit depth they are scaled from (None: taken as 0-255)."""
    from PIL import Image

    try:
        image = Image.open(path)
    except Exception as error:  # Pillow raises many kinds of errors on files it cannot open; the cause is found below.
        if isinstance(error, MemoryError):
            raise
        return _unopenable(path, error)
    with image:
        try:
            return _open_image_samples(image, path)
        except DataError:
            raise
        except Exception as error:  # Pillow meets a damaged file at any step: frames, tags, pixels.
            if isinstance(error, MemoryError):
                raise
            raise DataError(
                f"{path}: is a truncated or damaged {image.format} file ({image_formats.describe_error(error)}); re-export or replace it."
            ) from None


def _open_image_samples(image, path) -> tuple[np.ndarray, int | None]:
    """The samples of an image that Pillow has opened, from Pillow or, where it cuts them, from another reader."""
    frames = getattr(image, "n_frames", 1)
    # An MPO (a camera JPEG) holds the picture first and previews after it: its first frame is the image.
    if frames > 1 and image.format != "MPO":
        raise DataError(f"{path}: holds {frames} frames (an animation or a multi-page file); save each frame as its own image.")
    if image.format == "TIFF" and _tiff_beyond_pillow(image, path):
        return image_formats.read_tiff(path)
    bit_depth, colour_type = image_formats.png_bit_depth(path) if image.format == "PNG" else (8, None)
    if bit_depth == 16 and colour_type in (2, 4, 6):
        return image_formats.read_png_16_bit_colour(path)
    samples, bits = _pillow_samples(image, path)
    _refuse_transparent_colour(image, samples, path, bit_depth=bit_depth)
    return samples, bits


def _unopenable(path, error: Exception):
    """Says why Pillow could not open a file; a TIFF that Pillow cannot read (floats, 16-bit grey + alpha) goes to tifffile."""
    from PIL import Image

    if isinstance(error, FileNotFoundError):
        raise DataError(f"{path}: no such file; check the path.") from None
    if isinstance(error, Image.DecompressionBombError):
        raise DataError(f"{path}: is too large to decode safely ({image_formats.describe_error(error)}); shrink it first.") from None
    head = image_formats.read_bytes(path, 16)
    if not head:
        raise DataError(f"{path}: is empty (0 bytes); delete it or replace it with the image.") from None
    kind = image_formats.sniff_format(head)
    if kind == "TIFF":
        return image_formats.read_tiff(path)
    if kind is not None:
        raise DataError(
            f"{path}: is a damaged {kind} file that cannot be decoded ({type(error).__name__}); re-export or replace it."
        ) from None
    raise DataError(
        f"{path}: is not an image file (its content is none of {image_formats.FORMAT_NAMES}); delete it or convert it to PNG."
    ) from None


def _tiff_beyond_pillow(image, path) -> bool:
    """Whether a TIFF needs tifffile: Pillow cuts colour samples of more than 8 bits to 8 and reads 32-bit ones loosely.
    Refuses what Pillow would drop without a word: extra samples and inverted 16-bit greyscale."""
    tags = image.tag_v2
    bits = tags.get(258, (1,))
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    if image.mode.startswith("I;16"):
        if tags.get(262, 1) != 1:
            raise DataError(f"{path}: is a 16-bit TIFF in inverted greyscale (MinIsWhite); save it as MinIsBlack greyscale or as PNG.")
        # Pillow widens 12-bit samples into this mode without scaling them: those are scaled by their own depth.
        return bits != 16
    if bits > 8:
        return True
    if int(tags.get(277, 1)) > len(image.getbands()) or image.mode == "RGBX":
        raise DataError(
            f"{path}: is a TIFF with extra samples per pixel beside its colour (not one alpha channel), which would be dropped; "
            f"save only the colour channels (and alpha)."
        )
    return False


def _pillow_samples(image, path) -> tuple[np.ndarray, int | None]:
    """The samples that Pillow reads exactly, by image mode."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image).astype(np.uint8)[..., None], 1
    if mode in EIGHT_BIT_MODES:
        samples = np.asarray(image)
        return (samples[..., None] if samples.ndim == 2 else samples), 8
    if mode in ("P", "PA"):
        # The palette lookup; a transparent palette entry becomes alpha and is checked like any alpha.
        return np.asarray(image.convert("RGBA")), 8
    if mode.startswith("I;16"):
        samples = np.asarray(image)
        return samples.astype(samples.dtype.newbyteorder("="))[..., None], (16 if samples.dtype.kind == "u" else None)
    if mode in ("I", "F"):
        return np.asarray(image)[..., None], None
    raise DataError(
        f"{path}: is a {mode} image, a colour space with no exact conversion to RGB; "
        f"convert it to RGB with its colour profile (in an image editor, say) and save it as PNG."
    )


def _refuse_transparent_colour(image, samples: np.ndarray, path, *, bit_depth: int) -> None:
    """Refuses an image whose one transparent colour (PNG tRNS, GIF) is used by any pixel; palettes are checked as alpha."""
    transparency = image.info.get("transparency")
    if transparency is None or image.mode in ("P", "PA", "LA", "RGBA"):
        return
    if isinstance(transparency, tuple):
        transparent = np.all(samples == np.asarray(transparency), axis=-1)
    else:
        value, grey = int(transparency), samples[..., 0]
        if image.mode == "1":
            # Pillow gives a 1-bit image's transparent grey as 0 or 255 and its pixels as 0 or 1.
            grey = grey * 255
        elif image.mode == "L" and bit_depth < 8:
            # Pillow scales 2- and 4-bit greys to 8 bits but keeps the transparent grey as stored.
            value = value * 255 // (2**bit_depth - 1)
        transparent = grey == value
    if transparent.any():
        raise DataError(
            f"{path}: {int(transparent.sum())} pixels have the colour it marks as transparent, and no background is ever assumed for you; "
            f"flatten the image onto its background and save it without transparency."
        )


def samples_to_rgb(samples: np.ndarray, *, bits: int | None, source) -> np.ndarray:
    """Turns samples (height, width, 1-4 channels: grey, grey + alpha, RGB, RGBA) into RGB uint8 as documented above."""
    if samples.ndim != 3 or samples.shape[0] == 0 or samples.shape[1] == 0 or not 1 <= samples.shape[-1] <= 4:
        raise DataError(f"{source}: holds samples of shape {samples.shape}, not one image with pixels; re-export or replace it.")
    channels = samples.shape[-1]
    colour = samples[..., : channels - 1] if channels in (2, 4) else samples
    if channels in (2, 4):
        if bits is None:
            raise DataError(f"{source}: has an alpha channel beside {samples.dtype} samples; save it without alpha.")
        transparent = samples[..., -1] != 2**bits - 1
        if transparent.any():
            raise DataError(
                f"{source}: {int(transparent.sum())} of {transparent.size} pixels are transparent or translucent, and no "
                f"background is ever assumed for you; flatten the image onto its background and save it without alpha."
            )
    if bits is None:
        colour = pixel_values_to_uint8(colour, source=source, name="the image")
    else:
        if colour.size and colour.max() > 2**bits - 1:
            raise DataError(f"{source}: holds values up to {colour.max()} in {bits}-bit samples; re-export it.")
        colour = scale_to_8_bits(colour, bits)
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    return np.ascontiguousarray(colour)


def scale_to_8_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Scales unsigned samples of `bits` bits to 8 bits: round(value * 255 / (2**bits - 1)), halves up, in integers.

    For 16 bits that is round(value / 257) (no value falls halfway); for 1, 2 and 4 bits it is exact (0/255,
    multiples of 85 and of 17); 8 bits stay as they are.
    """
    if bits == 8:
        return values.astype(np.uint8)
    maximum = 2**bits - 1
    wide = values.astype(np.uint64)
    return ((wide * 510 + maximum) // (2 * maximum)).astype(np.uint8)


def crop_and_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crops an RGB uint8 image to a square (the extra pixel of an odd margin on the right or bottom) and
    resizes it with Pillow's Lanczos filter to size x size; a square of that size is returned as it is."""
    from PIL import Image

    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
