"""Layout blocks: a document is described as data, then rendered.

Builders draw every random choice up front and emit a list of blocks, so a
document can be re-rendered at a smaller scale without touching its RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from doctune.synth.style import Style


@dataclass(frozen=True)
class Text:
    """A single line of text.

    Attributes:
        text: The text.
        rel: Font size relative to the body size.
        bold: Bold weight.
        italic: Italic style.
        align: left, center or right within the region.
        head: Use the heading font family.
        color: ``"ink"``, ``"accent"`` or ``"muted"``.
    """

    text: str
    rel: float = 1.0
    bold: bool = False
    italic: bool = False
    align: str = "left"
    head: bool = False
    color: str = "ink"


@dataclass(frozen=True)
class Pairs:
    """Label/value pairs such as ``Invoice No: INV-1``.

    Attributes:
        items: ``(label, value)`` pairs.
        mode: inline, columns or stacked; None uses the document style.
        align: Value alignment: left, or right (flush with the region edge).
        value_bold: Bold values.
        bold_last: Make the last pair bold (grand totals).
        colon: Whether labels get the style's colon (False for receipt items).
    """

    items: tuple[tuple[str, str], ...]
    mode: str | None = None
    align: str = "left"
    value_bold: bool = False
    bold_last: bool = False
    colon: bool = True


@dataclass(frozen=True)
class Table:
    """A table with a header row.

    Attributes:
        header: Column titles.
        rows: Cell texts, one list per row.
        numeric: Per column, whether it holds numbers (aligned right).
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]


@dataclass(frozen=True)
class Columns:
    """Two block lists side by side; stacked when they do not fit.

    Attributes:
        left: Blocks of the left column.
        right: Blocks of the right column.
        split: Fraction of the width given to the left column.
    """

    left: tuple = ()
    right: tuple = ()
    split: float = 0.5


@dataclass(frozen=True)
class Extra:
    """Blocks that are left out when the page is too full (footers, contact rows).

    Attributes:
        items: The optional blocks.
    """

    items: tuple = ()


@dataclass(frozen=True)
class Gap:
    """Vertical white space, in body line pitches."""

    rows: float = 0.5


@dataclass(frozen=True)
class Rule:
    """A horizontal rule across the region.

    Attributes:
        dashed: Draw a dashed line (receipts).
        thick: Stroke width multiplier.
    """

    dashed: bool = False
    thick: int = 1


@dataclass(frozen=True)
class Logo:
    """A simple logo shape, aligned like the letterhead."""

    align: str = "left"


@dataclass(frozen=True)
class Fields:
    """Form fields; each inner tuple is one row split into equal cells.

    Attributes:
        rows: Rows of ``(label, value)`` cells.
        boxed: Label above a box holding the value (otherwise underlined).
    """

    rows: tuple[tuple[tuple[str, str], ...], ...]
    boxed: bool = True


@dataclass(frozen=True)
class Checks:
    """A checkbox group with one ticked option.

    Attributes:
        label: Group label.
        options: Option texts.
        selected: Index of the ticked option.
    """

    label: str
    options: tuple[str, ...]
    selected: int


@dataclass(frozen=True)
class Signature:
    """A handwritten-looking name above a rule, with a caption below.

    Attributes:
        name: Signer name (drawn in italics).
        caption: Caption under the rule, e.g. ``"Approved by"``.
    """

    name: str
    caption: str


@dataclass
class DocSpec:
    """Everything needed to render one document and ask questions about it.

    Attributes:
        style: Visual style.
        blocks: Blocks in reading order.
        fields: Field key -> displayed value.
        contexts: Field key -> text naming the row a field belongs to
            (e.g. the item description for ``item_2_amount``).
        content_width: Fraction of the page width used for content (receipts
            are narrow strips centred on the page).
    """

    style: Style
    blocks: list
    fields: dict[str, str]
    contexts: dict[str, str] = field(default_factory=dict)
    content_width: float = 1.0
