"""Renderers for the compound blocks: tables, form fields, checkboxes, signatures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from doctune.synth import blocks as b
from doctune.synth.canvas import INK, LayoutOverflow, Segment

if TYPE_CHECKING:
    from doctune.synth.render import Renderer

MUTED: tuple[int, int, int] = (70, 70, 78)
SHADE: tuple[int, int, int] = (228, 230, 234)
MIN_TABLE_REL = 0.86


def _column_widths(r: Renderer, item: b.Table, rel: float) -> list[float]:
    head, body = r.font(rel, bold=True), r.font(rel)
    widths = [head.getlength(text) for text in item.header]
    for row in item.rows:
        widths = [max(w, body.getlength(text)) for w, text in zip(widths, row, strict=True)]
    return widths


def _fit_table(r: Renderer, item: b.Table, avail: float) -> tuple[float, list[float]]:
    """Pick the largest table font that fits and stretch the text column.

    Args:
        r: Renderer.
        item: Table block.
        avail: Width available for the cells.

    Returns:
        Relative font size and the width of every column.

    Raises:
        LayoutOverflow: If even the smallest allowed size does not fit.
    """
    rel = 1.0
    while rel >= MIN_TABLE_REL - 1e-9:
        widths = _column_widths(r, item, rel)
        spare = avail - sum(widths) - r.px(rel) * 0.9 * (len(widths) - 1)
        if spare >= 0:
            # The first text column absorbs the spare width so numbers sit flush right.
            stretch = item.numeric.index(False) if False in item.numeric else 0
            widths[stretch] += spare
            return rel, widths
        rel -= 0.035
    raise LayoutOverflow("table too wide")


def _table_row(r, cells, lefts, widths, numeric, font, top, pitch, x0, x1) -> None:
    text_top = top + (pitch - sum(font.getmetrics())) / 2
    segs = []
    for text, left, width, is_num in zip(cells, lefts, widths, numeric, strict=True):
        if is_num and r.style.numbers_right:
            segs.append(Segment(text, left + width, font, "right"))
        else:
            segs.append(Segment(text, left, font))
    r.canvas.row(text_top, segs, x0, x1)


def _decorate(r: Renderer, x0: float, x1: float, tops: list[float], lefts: list[float]) -> None:
    """Draw the table's rules, shading or grid; ``tops`` holds every row boundary."""
    style, accent = r.style.table_style, r.style.accent
    if style == "grid":
        for y in tops:
            r.canvas.hline(x0, x1, y, 1, INK)
        for x in [x0, *[left - r.px(0.45) for left in lefts[1:]], x1]:
            r.canvas.line((x, tops[0]), (x, tops[-1]), 1)
        return
    if style == "ruled":
        r.canvas.hline(x0, x1, tops[0], 2, accent)
        r.canvas.hline(x0, x1, tops[-1], 2, accent)
    r.canvas.hline(x0, x1, tops[1], 1, accent if style != "shaded" else INK)


def draw_table(r: Renderer, item: b.Table, x0: float, x1: float, y: float) -> float:
    """Render a :class:`~doctune.synth.blocks.Table`.

    Args:
        r: Renderer.
        item: Table block.
        x0: Left edge of the region.
        x1: Right edge of the region.
        y: Top of the table.

    Returns:
        The y coordinate below the table.

    Raises:
        LayoutOverflow: If the table does not fit.
    """
    boxed = r.style.table_style in ("grid", "shaded")
    pad = r.px(0.4) if boxed else 0
    rel, widths = _fit_table(r, item, x1 - x0 - 2 * pad)
    lefts, x = [], x0 + pad
    for width in widths:
        lefts.append(x)
        x += width + r.px(rel) * 0.9
    pitch = r.pitch(rel) * 1.05
    y += 0.15 * pitch
    tops = [y + i * pitch for i in range(len(item.rows) + 2)]
    if r.style.table_style == "shaded":
        r.canvas.rect((x0, tops[0], x1, tops[1]), fill=SHADE)
    header_font, body_font = r.font(rel, bold=True), r.font(rel)
    _table_row(r, item.header, lefts, widths, item.numeric, header_font, tops[0], pitch, x0, x1)
    for top, row in zip(tops[1:-1], item.rows, strict=True):
        _table_row(r, row, lefts, widths, item.numeric, body_font, top, pitch, x0, x1)
    _decorate(r, x0, x1, tops, lefts)
    return tops[-1] + 0.3 * pitch


def _boxed_cell(r: Renderer, label: str, value: str, x0: float, x1: float, y: float) -> float:
    label_font, value_font = r.font(0.86, bold=r.style.label_bold), r.font()
    r.canvas.row(y, [Segment(label, x0, label_font, "left", MUTED)], x0, x1)
    top = y + r.pitch(0.86)
    height = r.px(1.0) * 1.75
    r.canvas.rect((x0, top, x1, top + height), outline=(90, 90, 96))
    text_top = top + (height - sum(value_font.getmetrics())) / 2
    r.canvas.row(text_top, [Segment(value, x0 + r.px(0.4), value_font)], x0, x1 - r.px(0.2))
    return top + height + 0.45 * r.pitch()


def _underlined_cell(r: Renderer, label: str, value: str, x0: float, x1: float, y: float) -> float:
    label_font, value_font = r.font(bold=r.style.label_bold), r.font()
    text = r.label(label)
    vx = x0 + label_font.getlength(text + " ")
    baseline = r.canvas.row(
        y, [Segment(text, x0, label_font), Segment(value, vx, value_font)], x0, x1
    )
    r.canvas.hline(vx - 2, x1, baseline + value_font.getmetrics()[1] + 1, 1, MUTED)
    return y + r.pitch() * 1.3


def draw_fields(r: Renderer, item: b.Fields, x0: float, x1: float, y: float) -> float:
    """Render form fields row by row, splitting each row into equal cells.

    Args:
        r: Renderer.
        item: Fields block.
        x0: Left edge of the region.
        x1: Right edge of the region.
        y: Top of the first row.

    Returns:
        The y coordinate below the fields.

    Raises:
        LayoutOverflow: If a value does not fit its cell.
    """
    for row in item.rows:
        point = r.canvas.checkpoint()
        try:
            y = _field_row(r, row, item.boxed, x0, x1, y)
        except LayoutOverflow:
            if len(row) == 1:
                raise
            # Cells too narrow side by side: undo and give each its own row.
            r.canvas.restore(point)
            for cell in row:
                y = _field_row(r, (cell,), item.boxed, x0, x1, y)
    return y


def _field_row(r: Renderer, row, boxed: bool, x0: float, x1: float, y: float) -> float:
    gap = r.px(1.0)
    cell = _boxed_cell if boxed else _underlined_cell
    width = (x1 - x0 - gap * (len(row) - 1)) / len(row)
    ends = [
        cell(r, label, value, x0 + i * (width + gap), x0 + i * (width + gap) + width, y)
        for i, (label, value) in enumerate(row)
    ]
    return max(ends)


def draw_checks(r: Renderer, item: b.Checks, x0: float, x1: float, y: float) -> float:
    """Render a label followed by checkbox options, one of them ticked.

    Args:
        r: Renderer.
        item: Checks block.
        x0: Left edge of the region.
        x1: Right edge of the region.
        y: Top of the row.

    Returns:
        The y coordinate below the row.

    Raises:
        LayoutOverflow: If the options do not fit on one row.
    """
    point = r.canvas.checkpoint()
    label_font = r.font(bold=r.style.label_bold)
    label = Segment(r.label(item.label), x0, label_font)
    try:
        return _check_row(
            r, item, [label], x0 + label_font.getlength(label.text) + r.px(0.8), x1, y
        )
    except LayoutOverflow:
        # Too wide for one row: label on its own row, options below it.
        r.canvas.restore(point)
    r.canvas.row(y, [label], x0, x1)
    return _check_row(r, item, [], x0 + r.px(0.3), x1, y + r.pitch())


def _check_row(
    r: Renderer, item: b.Checks, segs: list[Segment], x: float, x1: float, y: float
) -> float:
    """Draw checkbox options starting at ``x`` after any leading segments."""
    font = r.font()
    side = r.px(0.75)
    baseline = y + font.getmetrics()[0]
    x0 = segs[0].x if segs else x
    boxes = []
    for option in item.options:
        boxes.append((x, baseline - side, x + side, baseline))
        segs.append(Segment(option, x + side + r.px(0.35), font))
        x += side + r.px(0.35) + font.getlength(option) + r.px(0.9)
    r.canvas.row(y, segs, x0, x1)
    for index, box in enumerate(boxes):
        r.canvas.rect(box, outline=INK, width=max(1, round(side / 9)))
        if index == item.selected:
            _tick(r, box)
    return y + r.pitch() * 1.2


def _tick(r: Renderer, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    inset = (x1 - x0) * 0.2
    width = max(1, round((x1 - x0) / 6))
    r.canvas.line((x0 + inset, y0 + inset), (x1 - inset, y1 - inset), width)
    r.canvas.line((x0 + inset, y1 - inset), (x1 - inset, y0 + inset), width)


def draw_signature(r: Renderer, item: b.Signature, x0: float, x1: float, y: float) -> float:
    """Render an italic signer name over a rule with a caption underneath.

    Args:
        r: Renderer.
        item: Signature block.
        x0: Left edge of the region.
        x1: Right edge of the region.
        y: Top of the block.

    Returns:
        The y coordinate below the caption.

    Raises:
        LayoutOverflow: If it does not fit.
    """
    name_font = r.font(1.1, italic=True, head=True)
    baseline = r.canvas.row(y, [Segment(item.name, x0 + r.px(0.5), name_font)], x0, x1)
    line_y = baseline + name_font.getmetrics()[1] + 2
    rule_end = x0 + max(0.55 * (x1 - x0), name_font.getlength(item.name) + r.px(1))
    r.canvas.hline(x0, min(rule_end, x1), line_y, 1, INK)
    caption_font = r.font(0.86)
    r.canvas.row(line_y + 3, [Segment(item.caption, x0, caption_font, "left", MUTED)], x0, x1)
    return line_y + 3 + r.pitch(0.86)
