"""Robust loading of real-world document images and PDFs.

Every loader returns a fully decoded RGB :class:`PIL.Image.Image`, so models
see one consistent input whatever the scanner or exporter produced, and every
failure is an :class:`ImageLoadError` that names the file, the problem, and
what to do about it.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from doctune.errors import DoctuneError

DEFAULT_DPI = 150
# PDF user space is measured in points: 72 per inch.
_POINTS_PER_INCH = 72
# The PDF header may legally sit anywhere in the first 1024 bytes.
_PDF_HEADER_WINDOW = 1024
_PDF_MAGIC = b"%PDF"
_WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


class ImageLoadError(DoctuneError, ValueError):
    """A document image or PDF could not be loaded.

    The message is one line naming the file, what is wrong, and what to do.
    """


def load_page(path: str | os.PathLike, page: int = 1, dpi: int = DEFAULT_DPI) -> Image.Image:
    """Load one page of a document image or PDF as RGB.

    Args:
        path: PNG, JPEG, TIFF (multi-page allowed), WebP, other formats Pillow
            reads, or PDF. PDFs are recognised by their ``%PDF`` header,
            whatever the file extension.
        page: 1-based page (PDF) or frame (multi-page TIFF) to load.
        dpi: Rendering resolution for PDF pages; ignored for raster images.

    Returns:
        The fully decoded page as an RGB image.

    Raises:
        ImageLoadError: If the file is missing, empty, not an image, truncated,
            too large (decompression bomb), an encrypted or corrupt PDF, or has
            no such page.
        ValueError: If ``dpi`` is not a positive integer.
    """
    name = os.fspath(path)
    _check_page_and_dpi(name, page, dpi)
    head = _read_head(name)
    if _looks_like_pdf(head):
        return _render_pdf(name, name, page, dpi)
    return _decode_raster(name, name, page)


def decode_image_bytes(data: bytes, name: str, page: int = 1) -> Image.Image:
    """Decode an image stored as bytes (e.g. in a dataset or an upload) to RGB.

    PDF bytes are accepted too; page ``page`` is rendered at :data:`DEFAULT_DPI`.

    Args:
        data: Encoded image or PDF bytes.
        name: How to refer to the image in error messages (a file name or a
            dataset row id).
        page: 1-based page (PDF) or frame (multi-page TIFF) to decode.

    Returns:
        The fully decoded image as RGB.

    Raises:
        ImageLoadError: If the bytes are empty, not an image, truncated, too
            large, or an encrypted or corrupt PDF.
        TypeError: If ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    _check_page_and_dpi(name, page, DEFAULT_DPI)
    payload = bytes(data)
    if not payload:
        raise ImageLoadError(f"{name}: image data is empty (0 bytes); check that the dataset stores the image")
    if _looks_like_pdf(payload[:_PDF_HEADER_WINDOW]):
        return _render_pdf(payload, name, page, DEFAULT_DPI)
    return _decode_raster(io.BytesIO(payload), name, page)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow image to an upright 8-bit RGB image.

    Applies the EXIF orientation, scales 16-bit greyscale to 8 bits, flattens
    transparency onto white (documents are white paper), and converts CMYK,
    palette, greyscale and 1-bit images.

    Args:
        image: A loaded Pillow image in any mode.

    Returns:
        A new RGB image; the input is not modified.
    """
    upright = ImageOps.exif_transpose(image)
    if upright.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_grey(upright).convert("RGB")
    if upright.has_transparency_data:
        return _flatten_on_white(upright)
    return upright.convert("RGB")


def _sixteen_bit_to_grey(image: Image.Image) -> Image.Image:
    """Scale a 16-bit greyscale image to 8-bit ``L``.

    Pillow's own conversion clips values above 255 to white, which would turn
    almost any 16-bit scan into a blank page, so the full range is rescaled.
    Mode ``I`` is treated as 16-bit data, as PNG and TIFF readers produce it.

    Args:
        image: Image in mode ``I`` or one of the ``I;16`` modes.

    Returns:
        Mode ``L`` image with 0..65535 mapped linearly onto 0..255.
    """
    as_int = image if image.mode == "I" else image.convert("I")
    # Adding 0.5 rounds to nearest; the final "L" conversion clips out-of-range values.
    scaled = as_int.point(lambda value: value * (255 / 65535) + 0.5)
    return scaled.convert("L")


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite an image with transparency over a white page.

    Args:
        image: Image with an alpha channel or a transparency key.

    Returns:
        RGB image where transparent areas are white.
    """
    rgba = image.convert("RGBA")
    page = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(page, rgba).convert("RGB")


def _check_page_and_dpi(name: str, page: int, dpi: int) -> None:
    """Validate the page number and rendering resolution.

    Args:
        name: File name for messages.
        page: Requested 1-based page.
        dpi: Requested PDF rendering resolution.

    Raises:
        ImageLoadError: If ``page`` is not an integer of at least 1.
        ValueError: If ``dpi`` is not a positive integer.
    """
    # bool is an int subclass; True as a page number is a bug, not page 1.
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ImageLoadError(f"{name}: page must be an integer of 1 or more (pages are 1-based), got {page!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"dpi must be a positive integer, got {dpi!r}")


def _read_head(name: str) -> bytes:
    """Read the start of a file, turning common file problems into clear errors.

    Args:
        name: Path of the file.

    Returns:
        Up to the first 1024 bytes of the file.

    Raises:
        ImageLoadError: If the file is missing, a directory, unreadable, or empty.
    """
    try:
        with open(name, "rb") as handle:
            head = handle.read(_PDF_HEADER_WINDOW)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{name}: file not found; check the path") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{name}: is a directory, not an image file; pass a file path") from exc
    except PermissionError as exc:
        raise ImageLoadError(f"{name}: permission denied; check the file's permissions") from exc
    if not head:
        raise ImageLoadError(f"{name}: file is empty (0 bytes); re-download or re-export it")
    return head


def _looks_like_pdf(head: bytes) -> bool:
    """Tell whether leading bytes carry a PDF header.

    Args:
        head: The first bytes of a file (up to 1024).

    Returns:
        True if ``%PDF`` appears within them.
    """
    return _PDF_MAGIC in head[:_PDF_HEADER_WINDOW]


def _decode_raster(source: str | BinaryIO, name: str, page: int) -> Image.Image:
    """Open, fully decode and convert a raster image.

    Args:
        source: File path or binary stream.
        name: File name for messages.
        page: 1-based frame to load.

    Returns:
        The selected frame as RGB.

    Raises:
        ImageLoadError: If the data is not an image, truncated or corrupt,
            too large, or has no such frame.
    """
    try:
        # Turn Pillow's bomb warning into an error here only; global filters stay as they were.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                _seek_frame(image, name, page)
                # Decode everything now: Pillow is lazy and would hide truncation until later.
                image.load()
                return to_rgb(image)
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"{name}: not a recognised image format; supply a PNG, JPEG, TIFF, WebP or PDF file"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(_too_large_message(name, str(exc))) from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"{name}: image data is truncated or corrupt ({exc}); re-download or re-export it") from exc


def _seek_frame(image: Image.Image, name: str, page: int) -> None:
    """Move a possibly multi-frame image to the requested frame.

    Args:
        image: Opened, not yet loaded, image.
        name: File name for messages.
        page: 1-based frame number.

    Raises:
        ImageLoadError: If the image has fewer frames than ``page``.
    """
    try:
        image.seek(page - 1)
    except EOFError as exc:
        count = sum(1 for _ in ImageSequence.Iterator(image))
        raise ImageLoadError(
            f"{name}: page {page} requested but the file has {_pages(count)}; choose a page from 1 to {count}"
        ) from exc


def _too_large_message(name: str, detail: str) -> str:
    """Build the error message for a possible decompression bomb.

    Args:
        name: File name.
        detail: What was too large.

    Returns:
        One-line message with the remedy.
    """
    return (
        f"{name}: image is too large to load safely ({detail}); downscale it, lower the dpi, "
        "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )


def _pages(count: int) -> str:
    """Say ``1 page`` or ``N pages``.

    Args:
        count: Number of pages.

    Returns:
        The count with the right noun.
    """
    return f"{count} page" if count == 1 else f"{count} pages"


def _render_pdf(source: str | bytes, name: str, page: int, dpi: int) -> Image.Image:
    """Open a PDF and render one page.

    Args:
        source: File path or PDF bytes.
        name: File name for messages.
        page: 1-based page number.
        dpi: Rendering resolution.

    Returns:
        The rendered page as RGB.

    Raises:
        ImageLoadError: If the PDF is encrypted or corrupt, the page does not
            exist, or rendering it would be too large.
    """
    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        raise ImageLoadError(_pdf_open_message(name, exc)) from exc
    try:
        return _render_pdf_page(document, name, page, dpi)
    finally:
        document.close()


def _pdf_open_message(name: str, exc: pdfium.PdfiumError) -> str:
    """Explain why PDFium could not open a document.

    Args:
        name: File name.
        exc: The PDFium error.

    Returns:
        One-line message; password-protected files get their own remedy.
    """
    if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
        return (
            f"{name}: PDF is encrypted or password-protected ({exc}); "
            "save an unprotected copy (e.g. `qpdf --decrypt`) and load that"
        )
    return f"{name}: PDF is corrupt or unreadable ({exc}); re-download it or repair it (e.g. with qpdf)"


def _render_pdf_page(document: pdfium.PdfDocument, name: str, page: int, dpi: int) -> Image.Image:
    """Render one page of an open PDF.

    Args:
        document: Open PDF document.
        name: File name for messages.
        page: 1-based page number.
        dpi: Rendering resolution.

    Returns:
        The rendered page as RGB.

    Raises:
        ImageLoadError: If the page does not exist, is corrupt, or would
            render to more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``.
    """
    count = len(document)
    if page > count:
        raise ImageLoadError(
            f"{name}: page {page} requested but the PDF has {_pages(count)}; choose a page from 1 to {count}"
        )
    scale = dpi / _POINTS_PER_INCH
    try:
        pdf_page = document[page - 1]
        _check_render_size(name, pdf_page.get_size(), scale)
        bitmap = pdf_page.render(scale=scale)
    except pdfium.PdfiumError as exc:
        raise ImageLoadError(f"{name}: page {page} of the PDF is corrupt ({exc}); re-export the PDF") from exc
    # to_rgb copies the pixels, so the PDFium buffers can be released afterwards.
    return to_rgb(bitmap.to_pil())


def _check_render_size(name: str, size_points: tuple[float, float], scale: float) -> None:
    """Refuse to render a page bigger than Pillow's decompression-bomb limit.

    Args:
        name: File name for messages.
        size_points: Page width and height in points.
        scale: Pixels per point.

    Raises:
        ImageLoadError: If the rendered page would exceed
            ``PIL.Image.MAX_IMAGE_PIXELS`` (checked when not ``None``).
    """
    limit = Image.MAX_IMAGE_PIXELS
    width, height = (round(side * scale) for side in size_points)
    if limit is not None and width * height > limit:
        detail = f"{width}x{height} = {width * height} pixels exceeds the limit of {limit}"
        raise ImageLoadError(_too_large_message(name, detail))
