"""What Pillow does not tell exactly about an image file: its format from its first bytes, a PNG's bit depth, and
the full-depth samples of the files that Pillow cuts to 8 bits (16-bit colour PNGs, TIFFs of more than 8 bits).

Every reader here returns samples of shape (height, width, channels), channels being grey, grey + alpha, RGB or
RGB + alpha, with the bit depth they are scaled from (None: no depth, the values are taken as pixel values 0-255).
`utils.data.images` turns them into 8-bit RGB. Every problem is a one-sentence `DataError`.
"""

from __future__ import annotations

import io
import os

import numpy as np

from utils.data.checks import DataError

# The first bytes of each image format that the suite reads (docs/contracts.md, Input kinds and what each gets).
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF or WebP"
# TIFF's ExtraSamples values that mean alpha: associated (premultiplied) and unassociated.
TIFF_ALPHA_SAMPLES = (1, 2)


def read_bytes(source: str | os.PathLike | io.IOBase, count: int | None = None) -> bytes:
    """The first `count` bytes of a file or binary file object (all of them with None); a file object is rewound."""
    if hasattr(source, "read"):
        source.seek(0)
        content = source.read() if count is None else source.read(count)
        source.seek(0)
        return content
    try:
        with open(source, "rb") as handle:
            return handle.read() if count is None else handle.read(count)
    except OSError as error:
        raise DataError(f"{source}: cannot be read ({error.strerror or error}); check that it exists and is readable.") from None


def describe_error(error: Exception) -> str:
    """A library's error as a short clause of one line: its type and its first 160 characters."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def sniff_format(head: bytes) -> str | None:
    """The image format that the first bytes of a file announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in SIGNATURES.items() if head.startswith(signature)), None)


def png_bit_depth(source) -> tuple[int, int]:
    """A PNG's bit depth per sample and colour type (0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA), from its header."""
    head = read_bytes(source, 26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise DataError(f"{source}: is a damaged PNG file (its header is incomplete); re-export or replace it.")
    return head[24], head[25]


def read_png_16_bit_colour(source) -> tuple[np.ndarray, int]:
    """The exact samples of a 16-bit RGB, RGBA or grey + alpha PNG (Pillow keeps only the high byte of each):
    uint16 (height, width, 3 or 4), grey + alpha as RGBA and a transparent colour (tRNS) as alpha, decoded by OpenCV."""
    import cv2

    decoded = cv2.imdecode(np.frombuffer(read_bytes(source), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3 or decoded.shape[-1] not in (3, 4):
        raise DataError(f"{source}: is a damaged 16-bit PNG file that cannot be decoded; re-export or replace it.")
    # OpenCV orders the channels blue, green, red (then alpha).
    order = [2, 1, 0, 3][: decoded.shape[-1]]
    return decoded[..., order], 16


def _refuse_too_large(pixels: int, source) -> None:
    """Refuses, before decoding, an image with more pixels than Pillow decodes safely (its decompression-bomb limit)."""
    from PIL import Image

    limit = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
    if pixels > limit:
        raise DataError(
            f"{source}: claims {pixels:,} pixels, more than the {limit:,} decoded safely (a damaged header?); shrink or replace it."
        )


def read_tiff(source) -> tuple[np.ndarray, int | None]:
    """The exact samples of a TIFF that Pillow cannot read exactly (more than 8 bits per sample, floats), read with
    tifffile: grey or RGB (MinIsBlack or RGB photometric), each optionally with one alpha sample."""
    import tifffile

    try:
        with tifffile.TiffFile(source) as tiff:
            return _tiff_samples(tiff, source)
    except DataError:
        raise
    except ValueError as error:
        if "imagecodecs" in str(error):
            raise DataError(
                f"{source}: is a TIFF that needs the imagecodecs package to be read exactly ({describe_error(error)}); "
                f"pip install imagecodecs, or re-save it uncompressed at 8 or 16 bits, or as a 16-bit PNG."
            ) from None
        raise DataError(f"{source}: is a damaged TIFF file ({describe_error(error)}); re-export or replace it.") from None
    except Exception as error:  # tifffile raises many kinds of errors on damaged files (bad tags too); each is the file's fault.
        if isinstance(error, MemoryError):
            raise
        raise DataError(f"{source}: is a damaged TIFF file ({describe_error(error)}); re-export or replace it.") from None


def _tiff_samples(tiff, source) -> tuple[np.ndarray, int | None]:
    """The first page's samples as (height, width, channels), checked against its photometric and extra-sample tags."""
    if len(tiff.pages) > 1:
        raise DataError(f"{source}: holds {len(tiff.pages)} pages (a stack or a multi-page file); save each page as its own image.")
    page = tiff.pages[0]
    _refuse_too_large(int(page.imagewidth) * int(page.imagelength), source)
    samples = page.asarray()
    if page.axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif page.axes == "YX":
        samples = samples[..., None]
    elif page.axes != "YXS":
        raise DataError(
            f"{source}: is a TIFF of shape {samples.shape} (axes {page.axes}), not one 2-D image; save it as one greyscale or RGB image."
        )
    colour_channels = {1: 1, 2: 3}.get(int(page.photometric))
    if colour_channels is None:
        raise DataError(
            f"{source}: is a TIFF in the {getattr(page.photometric, 'name', page.photometric)} colour space, which has no exact "
            f"conversion to RGB here; save it as greyscale (MinIsBlack) or RGB, or as PNG."
        )
    extra = samples.shape[-1] - colour_channels
    if extra < 0:
        raise DataError(f"{source}: is a damaged TIFF file (fewer samples per pixel than its colour space needs); re-export or replace it.")
    extra_samples = tuple(page.extrasamples)
    if extra and not (extra == 1 and extra_samples[:1] and extra_samples[0] in TIFF_ALPHA_SAMPLES):
        raise DataError(
            f"{source}: is a TIFF with {extra} extra sample(s) per pixel beside its colour (not one alpha channel), "
            f"which would be dropped; save only the colour channels (and alpha)."
        )
    if samples.dtype == bool:
        return samples.astype(np.uint8), 1
    return samples, (int(page.bitspersample) if samples.dtype.kind == "u" and samples.dtype.itemsize <= 2 else None)
