"""Image files of every kind the loaders meet, written byte by byte where Pillow cannot write them (16-bit colour
PNGs, low bit depths, transparent colours), each with the 8-bit RGB pixels that docs/contracts.md (Input kinds and
what each gets) promises for it, or None where the file must be refused."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def scaled(values: np.ndarray, bits: int) -> np.ndarray:
    """The documented scaling to 8 bits, computed in floating point: round(value * 255 / (2**bits - 1)), halves up."""
    return np.floor(np.asarray(values, dtype=np.float64) * 255.0 / (2**bits - 1) + 0.5).astype(np.uint8)


def as_rgb(grey_or_rgb: np.ndarray) -> np.ndarray:
    """Greyscale (height, width) repeated into three channels; RGB passes through."""
    return np.repeat(grey_or_rgb[..., None], 3, axis=-1) if grey_or_rgb.ndim == 2 else grey_or_rgb


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def write_png(
    path: Path, samples: np.ndarray, *, bit_depth: int, colour_type: int, palette=None, transparency: bytes | None = None
) -> Path:
    """Writes a PNG from raw samples (height, width[, channels]) at any bit depth and colour type the format allows."""
    samples = np.asarray(samples)
    height = samples.shape[0]
    flat = samples.reshape(height, -1)
    if bit_depth == 16:
        rows = flat.astype(">u2").view(np.uint8).reshape(height, -1)
    elif bit_depth == 8:
        rows = flat.astype(np.uint8)
    else:
        per_byte = 8 // bit_depth
        padded = np.zeros((height, -(-flat.shape[1] // per_byte) * per_byte), dtype=np.uint8)
        padded[:, : flat.shape[1]] = flat
        shifts = (8 - bit_depth * (np.arange(per_byte) + 1)).astype(np.uint8)
        rows = (padded.reshape(height, -1, per_byte) << shifts).sum(axis=-1).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    content = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", samples.shape[1], height, bit_depth, colour_type, 0, 0, 0))
    if palette is not None:
        content += _chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).tobytes())
    if transparency is not None:
        content += _chunk(b"tRNS", transparency)
    content += _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(content)
    return path


def _alpha(rng, shape, maximum: int, opaque: bool) -> np.ndarray:
    if opaque:
        return np.full(shape, maximum, dtype=np.uint16 if maximum > 255 else np.uint8)
    alpha = rng.integers(0, maximum + 1, size=shape, dtype=np.uint32)
    alpha.flat[0] = maximum - 1  # At least one translucent pixel.
    return alpha.astype(np.uint16 if maximum > 255 else np.uint8)


# Each writer takes (rng, folder, height, width, variant) and returns (path, expected RGB uint8 or None: refused).
# `variant` is a small integer that picks an edge of the kind (opaque or not, transparent colour used or not, ...).


def png_grey(bits):
    def write(rng, folder, height, width, variant):
        grey = rng.integers(0, 2**bits, size=(height, width), dtype=np.uint32)
        transparency = None
        refused = False
        if variant == 1:
            # A transparent grey that some pixel has.
            transparent_grey = int(grey.flat[0])
            transparency, refused = struct.pack(">H", transparent_grey), True
        elif variant == 2 and bits > 1:
            # A transparent grey that no pixel has: nothing is transparent.
            grey = np.minimum(grey, 2**bits - 2)
            transparency = struct.pack(">H", 2**bits - 1)
        path = write_png(folder / f"grey{bits}.png", grey, bit_depth=bits, colour_type=0, transparency=transparency)
        return path, None if refused else as_rgb(scaled(grey, bits))

    return write


def png_colour(bits, channels):
    colour_type = {2: 4, 3: 2, 4: 6}[channels]

    def write(rng, folder, height, width, variant):
        maximum = 2**bits - 1
        dtype = np.uint16 if bits == 16 else np.uint8
        colour = rng.integers(0, maximum + 1, size=(height, width, 1 if channels == 2 else 3), dtype=np.uint32).astype(dtype)
        transparency = None
        refused = False
        if channels in (2, 4):
            alpha = _alpha(rng, (height, width, 1), maximum, opaque=variant != 1)
            samples = np.concatenate([colour, alpha], axis=-1)
            refused = variant == 1
        else:
            samples = colour
            if variant == 1:
                transparency, refused = struct.pack(f">{3}H", *(int(value) for value in colour[0, 0])), True
        path = write_png(
            folder / f"colour{bits}_{channels}.png", samples, bit_depth=bits, colour_type=colour_type, transparency=transparency
        )
        rgb = scaled(colour, bits)
        return path, None if refused else (np.repeat(rgb, 3, axis=-1) if channels == 2 else rgb)

    return write


def png_palette(bits):
    def write(rng, folder, height, width, variant):
        entries = 2**bits
        palette = rng.integers(0, 256, size=(entries, 3), dtype=np.uint8)
        indices = rng.integers(0, entries, size=(height, width), dtype=np.uint8)
        transparency = None
        refused = False
        if variant == 1:
            # The first index in the image is translucent.
            alphas = np.full(entries, 255, dtype=np.uint8)
            alphas[indices.flat[0]] = 100
            transparency, refused = alphas.tobytes(), True
        elif variant == 2 and entries > 2:
            # A transparent entry that no pixel uses.
            indices = np.minimum(indices, entries - 2)
            alphas = np.full(entries, 255, dtype=np.uint8)
            alphas[-1] = 0
            transparency = alphas.tobytes()
        path = write_png(folder / f"palette{bits}.png", indices, bit_depth=bits, colour_type=3, palette=palette, transparency=transparency)
        return path, None if refused else palette[indices]

    return write


def pillow_file(mode, extension, **save_options):
    """A Pillow-written file of a lossless format; the expected pixels are the image's own, as Pillow holds them."""

    def write(rng, folder, height, width, variant):
        if mode == "1":
            bits = rng.integers(0, 2, size=(height, width), dtype=np.uint8)
            image = Image.fromarray(bits * 255).convert("1")
            expected = as_rgb(bits * 255)
        elif mode == "P":
            palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
            indices = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
            image = Image.fromarray(indices, mode="L").convert("P")
            image.putpalette(palette.tobytes())
            expected = palette[indices]
        else:
            channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
            samples = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
            if mode == "RGBA":
                samples[..., 3] = _alpha(rng, (height, width), 255, opaque=variant != 1)
            image = Image.fromarray(samples[..., 0] if channels == 1 else samples, mode=mode)
            expected = None if mode == "RGBA" and variant == 1 else as_rgb(samples[..., 0] if channels == 1 else samples[..., :3])
        path = folder / f"pillow_{mode}.{extension}"
        image.save(path, **save_options)
        return path, expected

    return write


def jpeg(mode):
    """JPEG is lossy: the expected pixels are what Pillow decodes from the file; CMYK is refused."""

    def write(rng, folder, height, width, variant):
        samples = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        image = Image.fromarray(samples).convert(mode)
        path = folder / f"picture_{mode}.jpg"
        image.save(path, quality=90)
        if mode == "CMYK":
            return path, None
        with Image.open(path) as decoded:
            return path, as_rgb(np.asarray(decoded))

    return write


def tiff(dtype, channels, *, planar="contig", photometric=None, pages=1, values="whole"):
    """A TIFF written by tifffile: unsigned samples of up to 16 bits are scaled by their bit depth; wider integers and
    floats are taken as pixel values 0-255 when every value is a whole number in 0-255, and refused otherwise."""

    def write(rng, folder, height, width, variant):
        import tifffile

        dtype_ = np.dtype(dtype)
        bits = dtype_.itemsize * 8
        scaled_by_depth = dtype_.kind == "u" and bits <= 16
        shape = (pages, height, width, channels) if pages > 1 else (height, width, channels)
        if scaled_by_depth:
            samples = rng.integers(0, 2**bits, size=shape, dtype=np.uint32).astype(dtype_)
        elif values == "whole":
            samples = rng.integers(0, 256, size=shape).astype(dtype_)
        else:
            samples = rng.uniform(0, 1, size=shape).astype(dtype_)
        refused = pages > 1 or values != "whole"
        if not scaled_by_depth and variant == 1:
            # One value that has no exact 8-bit pixel: NaN, a negative number or one above 255.
            samples.flat[0] = np.nan if dtype_.kind == "f" else (-1 if dtype_.kind == "i" else 256)
            refused = True
        extrasamples = ()
        if channels in (2, 4):
            samples[..., -1] = 2**bits - 1 if scaled_by_depth and variant != 2 else 0
            # Alpha beside samples without a bit depth cannot be judged opaque, and is refused.
            refused = refused or variant == 2 or not scaled_by_depth
            extrasamples = ("unassalpha",)
        colour = samples[..., : 3 if channels >= 3 else 1]
        chosen = photometric or ("rgb" if channels >= 3 else "minisblack")
        refused = refused or (chosen == "miniswhite" and bits > 8) or chosen == "separated"
        stored = np.moveaxis(samples, -1, -3) if planar == "separate" else samples
        path = folder / f"samples_{dtype_.name}_{channels}_{planar}.tif"
        tifffile.imwrite(
            path, stored if channels > 1 else stored[..., 0], photometric=chosen, planarconfig=planar, extrasamples=extrasamples
        )
        if refused:
            return path, None
        pixels = scaled(colour, bits) if scaled_by_depth else colour.astype(np.uint8)
        if chosen == "miniswhite":
            pixels = 255 - pixels
        return path, np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels

    return write


WRITERS = {
    **{f"png grey {bits}-bit": png_grey(bits) for bits in (1, 2, 4, 8, 16)},
    **{
        f"png {['', '', 'grey+alpha', 'RGB', 'RGBA'][channels]} {bits}-bit": png_colour(bits, channels)
        for bits in (8, 16)
        for channels in (2, 3, 4)
    },
    **{f"png palette {bits}-bit": png_palette(bits) for bits in (1, 2, 4, 8)},
    **{f"bmp {mode}": pillow_file(mode, "bmp") for mode in ("1", "L", "P", "RGB")},
    **{f"gif {mode}": pillow_file(mode, "gif") for mode in ("L", "P")},
    **{f"webp {mode}": pillow_file(mode, "webp", lossless=True, exact=True) for mode in ("RGB", "RGBA")},
    **{f"tiff pillow {mode}": pillow_file(mode, "tif") for mode in ("1", "L", "P", "RGB", "RGBA")},
    **{f"jpeg {mode}": jpeg(mode) for mode in ("L", "RGB", "CMYK")},
    "tiff uint8 grey": tiff(np.uint8, 1),
    "tiff uint8 inverted grey": tiff(np.uint8, 1, photometric="miniswhite"),
    "tiff uint16 grey": tiff(np.uint16, 1),
    "tiff uint16 inverted grey": tiff(np.uint16, 1, photometric="miniswhite"),
    "tiff uint16 grey+alpha": tiff(np.uint16, 2),
    "tiff uint16 RGB": tiff(np.uint16, 3),
    "tiff uint16 RGB planar": tiff(np.uint16, 3, planar="separate"),
    "tiff uint16 RGBA": tiff(np.uint16, 4),
    "tiff uint8 CMYK": tiff(np.uint8, 4, photometric="separated"),
    "tiff uint16 pages": tiff(np.uint16, 1, pages=2),
    "tiff uint32 grey": tiff(np.uint32, 1),
    "tiff int16 grey": tiff(np.int16, 1),
    "tiff int32 RGB": tiff(np.int32, 3),
    "tiff float32 grey": tiff(np.float32, 1),
    "tiff float32 RGB": tiff(np.float32, 3),
    "tiff float64 grey 0-1": tiff(np.float64, 1, values="fractional"),
    "tiff float32 RGBA": tiff(np.float32, 4),
}
