"""Font loading for the synthetic document renderer.

Only the DejaVu fonts bundled with matplotlib are used, so rendering is
identical on every machine regardless of which system fonts are installed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
from PIL import ImageFont

FAMILIES: tuple[str, ...] = ("sans", "serif", "mono")

# (family, bold, italic) -> file name inside matplotlib's fonts/ttf folder.
_FILES: dict[tuple[str, bool, bool], str] = {
    ("sans", False, False): "DejaVuSans.ttf",
    ("sans", True, False): "DejaVuSans-Bold.ttf",
    ("sans", False, True): "DejaVuSans-Oblique.ttf",
    ("sans", True, True): "DejaVuSans-BoldOblique.ttf",
    ("serif", False, False): "DejaVuSerif.ttf",
    ("serif", True, False): "DejaVuSerif-Bold.ttf",
    ("serif", False, True): "DejaVuSerif-Italic.ttf",
    ("serif", True, True): "DejaVuSerif-BoldItalic.ttf",
    ("mono", False, False): "DejaVuSansMono.ttf",
    ("mono", True, False): "DejaVuSansMono-Bold.ttf",
    ("mono", False, True): "DejaVuSansMono-Oblique.ttf",
    ("mono", True, True): "DejaVuSansMono-BoldOblique.ttf",
}


def font_path(family: str, bold: bool = False, italic: bool = False) -> Path:
    """Return the path of a bundled DejaVu font file.

    Args:
        family: One of ``FAMILIES``.
        bold: Whether to use the bold weight.
        italic: Whether to use the oblique/italic style.

    Returns:
        Path to the ``.ttf`` file inside matplotlib's data directory.

    Raises:
        ValueError: If ``family`` is unknown.
    """
    key = (family, bold, italic)
    if key not in _FILES:
        raise ValueError(f"unknown font family {family!r}; expected one of {FAMILIES}")
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _FILES[key]


@functools.lru_cache(maxsize=512)
def load_font(
    family: str, size: int, bold: bool = False, italic: bool = False
) -> ImageFont.FreeTypeFont:
    """Load (and cache) a DejaVu font at a pixel size.

    Args:
        family: One of ``FAMILIES``.
        size: Font size in pixels (em size), at least 1.
        bold: Whether to use the bold weight.
        italic: Whether to use the oblique/italic style.

    Returns:
        A Pillow FreeType font object.

    Raises:
        ValueError: If ``family`` is unknown or ``size`` is not positive.
    """
    if size < 1:
        raise ValueError(f"font size must be positive, got {size}")
    return ImageFont.truetype(str(font_path(family, bold, italic)), size)
