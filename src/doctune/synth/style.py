"""Per-document visual style (fonts, sizes, arrangement choices)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from doctune.synth.fonts import FAMILIES

# Dark accents only: text must stay dark on white paper to remain legible.
ACCENTS: tuple[tuple[int, int, int], ...] = (
    (22, 22, 26),
    (20, 40, 90),
    (25, 70, 60),
    (100, 25, 30),
    (50, 50, 60),
    (40, 30, 85),
)

# Body sizes at a 448 px width: DejaVu capitals (~0.73 em) stay >= 8 px tall
# when a 1.35:1 page is shown 384 px high.
BODY_SIZES: tuple[float, ...] = (18.0, 18.5, 19.0)
PAIR_MODES: tuple[str, ...] = ("inline", "columns", "stacked")
TABLE_STYLES: tuple[str, ...] = ("ruled", "shaded", "grid", "plain")
LOGOS: tuple[str | None, ...] = (None, "circle", "square", "diamond")


@dataclass(frozen=True)
class Style:
    """Visual choices for one document; sizes are in pixels at a 448 px page width.

    Attributes:
        family: Body font family.
        head_family: Font family of titles and the letterhead.
        body: Body font size.
        spacing: Line pitch as a multiple of the font size.
        ratio: Page height divided by page width.
        margin: Page margin as a fraction of the page width.
        accent: Colour of titles, rules and logo.
        label_bold: Whether field labels are bold.
        colon: Whether labels end with a colon.
        pair_mode: Default label/value arrangement (see ``PAIR_MODES``).
        table_style: Table decoration (see ``TABLE_STYLES``).
        header_align: Letterhead alignment: left, center or right.
        logo: Logo shape or None.
        numbers_right: Whether numeric table columns are right aligned.
    """

    family: str = "sans"
    head_family: str = "sans"
    body: float = 18.0
    spacing: float = 1.35
    ratio: float = 1.35
    margin: float = 0.06
    accent: tuple[int, int, int] = ACCENTS[0]
    label_bold: bool = True
    colon: bool = True
    pair_mode: str = "columns"
    table_style: str = "ruled"
    header_align: str = "left"
    logo: str | None = None
    numbers_right: bool = True


def random_style(rng: random.Random, family: str | None = None) -> Style:
    """Draw a random style.

    Args:
        rng: Random source.
        family: Force the body font family (e.g. mono for receipts).

    Returns:
        The style.
    """
    body_family = family or rng.choice(FAMILIES[:2] * 3 + FAMILIES[2:])
    return Style(
        family=body_family,
        head_family=rng.choice((body_family, body_family, *FAMILIES[:2])),
        body=rng.choice(BODY_SIZES),
        spacing=rng.uniform(1.24, 1.4),
        ratio=rng.uniform(1.30, 1.41),
        margin=rng.uniform(0.045, 0.065),
        accent=rng.choice(ACCENTS),
        label_bold=rng.random() < 0.6,
        colon=rng.random() < 0.75,
        pair_mode=rng.choices(PAIR_MODES, weights=(0.45, 0.4, 0.15))[0],
        table_style=rng.choice(TABLE_STYLES),
        header_align=rng.choice(("left", "left", "center", "right")),
        logo=rng.choice(LOGOS) if rng.random() < 0.4 else None,
        numbers_right=rng.random() < 0.85,
    )
