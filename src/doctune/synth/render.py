"""Render layout blocks onto a :class:`~doctune.synth.canvas.Canvas`."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import ImageFont

from doctune.synth import blocks as b
from doctune.synth import widgets
from doctune.synth.canvas import INK, Canvas, LayoutOverflow, Segment
from doctune.synth.fonts import load_font
from doctune.synth.style import Style

REFERENCE_WIDTH = 448
MUTED: tuple[int, int, int] = widgets.MUTED


@dataclass
class Renderer:
    """Draws blocks with one style at one scale.

    Attributes:
        canvas: Target canvas.
        style: Document style.
        scale: Extra size multiplier (< 1 when re-laying out to fit).
        extras: Whether optional (:class:`~doctune.synth.blocks.Extra`) blocks are drawn.
    """

    canvas: Canvas
    style: Style
    scale: float = 1.0
    extras: bool = True

    def px(self, rel: float) -> int:
        """Return a font size in pixels for a size relative to the body size."""
        return max(
            6, round(self.style.body * rel * self.scale * self.canvas.width / REFERENCE_WIDTH)
        )

    def font(
        self, rel: float = 1.0, bold: bool = False, italic: bool = False, head: bool = False
    ) -> ImageFont.FreeTypeFont:
        """Return the document font at a relative size."""
        family = self.style.head_family if head else self.style.family
        return load_font(family, self.px(rel), bold, italic)

    def pitch(self, rel: float = 1.0) -> float:
        """Return the line pitch for text at a relative size."""
        return self.px(rel) * self.style.spacing

    def color(self, name: str) -> tuple[int, int, int]:
        """Map a colour name used by blocks to RGB."""
        return {"ink": INK, "accent": self.style.accent, "muted": MUTED}[name]

    def render(self, items, x0: float, x1: float, y: float) -> float:
        """Render blocks top to bottom in the region ``[x0, x1]``.

        Args:
            items: Blocks in reading order.
            x0: Left edge of the region.
            x1: Right edge of the region.
            y: Top of the first block.

        Returns:
            The y coordinate below the last block.

        Raises:
            LayoutOverflow: If something does not fit.
            TypeError: If an item is not a known block.
        """
        handlers = {
            b.Text: self._text,
            b.Pairs: self._pairs,
            b.Table: self._table,
            b.Columns: self._columns,
            b.Gap: self._gap,
            b.Rule: self._rule,
            b.Logo: self._logo,
            b.Fields: self._fields,
            b.Checks: self._checks,
            b.Signature: self._signature,
            b.Extra: self._extra,
        }
        for item in items:
            if type(item) not in handlers:
                raise TypeError(f"not a layout block: {item!r}")
            y = handlers[type(item)](item, x0, x1, y)
        return y

    def _text(self, item: b.Text, x0: float, x1: float, y: float) -> float:
        font = self.font(item.rel, item.bold, item.italic, item.head)
        x = {"left": x0, "right": x1, "center": (x0 + x1) / 2}[item.align]
        seg = Segment(item.text, x, font, item.align, self.color(item.color))
        self.canvas.row(y, [seg], x0, x1)
        return y + self.pitch(item.rel)

    def _extra(self, item: b.Extra, x0: float, x1: float, y: float) -> float:
        return self.render(item.items, x0, x1, y) if self.extras else y

    def _gap(self, item: b.Gap, x0: float, x1: float, y: float) -> float:
        return y + item.rows * self.pitch()

    def _rule(self, item: b.Rule, x0: float, x1: float, y: float) -> float:
        mid = y + 0.35 * self.pitch()
        width = max(1, round(item.thick * self.canvas.width / REFERENCE_WIDTH))
        if not item.dashed:
            self.canvas.hline(x0, x1, mid, width, self.style.accent)
            return y + 0.7 * self.pitch()
        step = max(4.0, self.px(0.5))
        x = x0
        while x < x1:
            self.canvas.hline(x, min(x + step * 0.6, x1), mid, width, INK)
            x += step
        return y + 0.7 * self.pitch()

    def _logo(self, item: b.Logo, x0: float, x1: float, y: float) -> float:
        size = 1.5 * self.px(1.0)
        left = {"left": x0, "right": x1 - size, "center": (x0 + x1 - size) / 2}[item.align]
        if y + size > self.canvas.bottom:
            raise LayoutOverflow("logo does not fit")
        self.canvas.shape(
            self.style.logo or "circle", (left, y, left + size, y + size), self.style.accent
        )
        return y + size + 0.3 * self.pitch()

    def _columns(self, item: b.Columns, x0: float, x1: float, y: float) -> float:
        gap = 0.05 * (x1 - x0)
        split = x0 + item.split * (x1 - x0)
        point = self.canvas.checkpoint()
        try:
            left_end = self.render(item.left, x0, split - gap / 2, y)
            right_end = self.render(item.right, split + gap / 2, x1, y)
            return max(left_end, right_end)
        except LayoutOverflow:
            # Side by side did not fit: undo and stack the columns instead,
            # keeping right-column content flush right as designed.
            self.canvas.restore(point)
        y = self.render(item.left, x0, x1, y)
        if item.left and item.right:
            y += 0.3 * self.pitch()
        return self.render(item.right, x0, x1, y)

    def label(self, label: str) -> str:
        """Return a field label with the document's colon convention applied."""
        return f"{label}:" if self.style.colon and not label.endswith((":", "?")) else label

    def _pairs(self, item: b.Pairs, x0: float, x1: float, y: float) -> float:
        mode = item.mode or self.style.pair_mode
        if mode == "stacked":
            return self._pairs_stacked(item, x0, x1, y)
        bold_label = self.style.label_bold
        labels = [self.label(label) if item.colon else label for label, _ in item.items]
        label_font = self.font(bold=bold_label)
        column_x = x0 + max(label_font.getlength(t) for t in labels) + self.px(0.8)
        for index, (label, (_, value)) in enumerate(zip(labels, item.items, strict=True)):
            last = item.bold_last and index == len(item.items) - 1
            lfont = self.font(bold=bold_label or last)
            vfont = self.font(bold=item.value_bold or last)
            vx = x0 + lfont.getlength(label + " ") if mode == "inline" else column_x
            segs = [Segment(label, x0, lfont), Segment(value, vx, vfont)]
            if item.align == "right":
                segs[1] = Segment(value, x1, vfont, "right")
            self.canvas.row(y, segs, x0, x1)
            y += self.pitch()
        return y

    def _pairs_stacked(self, item: b.Pairs, x0: float, x1: float, y: float) -> float:
        label_font = self.font(0.86, bold=self.style.label_bold)
        for index, (label, value) in enumerate(item.items):
            last = item.bold_last and index == len(item.items) - 1
            vfont = self.font(bold=item.value_bold or last)
            x = x1 if item.align == "right" else x0
            self.canvas.row(y, [Segment(label, x, label_font, item.align, MUTED)], x0, x1)
            y += self.pitch(0.86) * 0.92
            self.canvas.row(y, [Segment(value, x, vfont, item.align)], x0, x1)
            y += self.pitch() * 1.08
        return y

    def _table(self, item: b.Table, x0: float, x1: float, y: float) -> float:
        return widgets.draw_table(self, item, x0, x1, y)

    def _fields(self, item: b.Fields, x0: float, x1: float, y: float) -> float:
        return widgets.draw_fields(self, item, x0, x1, y)

    def _checks(self, item: b.Checks, x0: float, x1: float, y: float) -> float:
        return widgets.draw_checks(self, item, x0, x1, y)

    def _signature(self, item: b.Signature, x0: float, x1: float, y: float) -> float:
        return widgets.draw_signature(self, item, x0, x1, y)
