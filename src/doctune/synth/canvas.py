"""A drawing surface that records every word and line it renders.

The renderer never draws text except through :meth:`Canvas.row`, so the
recorded layout (words, word boxes, lines) is exactly what is on the page.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

INK: tuple[int, int, int] = (22, 22, 26)
_WORD = re.compile(r"\S+")


class LayoutOverflow(Exception):
    """Raised when text would leave its region or the page; callers re-layout."""


@dataclass(frozen=True)
class Segment:
    """One run of text drawn in a single font on a row.

    Attributes:
        text: Text to draw (words separated by single spaces).
        x: Anchor x position in page pixels.
        font: Font to draw with.
        align: Which side of the text ``x`` refers to: left, right or center.
        fill: RGB colour.
    """

    text: str
    x: float
    font: ImageFont.FreeTypeFont
    align: str = "left"
    fill: tuple[int, int, int] = INK


@dataclass
class Checkpoint:
    """Saved canvas state used to undo a tentative layout."""

    image: Image.Image
    words: int
    lines: int


@dataclass
class Canvas:
    """A white page plus the text layout drawn on it.

    Attributes:
        width: Page width in pixels.
        height: Page height in pixels.
        margin: Page margin in pixels; text must stay inside it.
    """

    width: int
    height: int
    margin: float
    image: Image.Image = field(init=False)
    words: list[str] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image = Image.new("RGB", (self.width, self.height), (255, 255, 255))

    @property
    def bottom(self) -> float:
        """Lowest y coordinate text may reach."""
        return self.height - self.margin

    def checkpoint(self) -> Checkpoint:
        """Return a snapshot that :meth:`restore` can roll back to."""
        return Checkpoint(self.image.copy(), len(self.words), len(self.lines))

    def restore(self, point: Checkpoint) -> None:
        """Undo everything drawn since ``point`` was taken.

        Args:
            point: A snapshot from :meth:`checkpoint`.
        """
        self.image = point.image
        del self.words[point.words :], self.boxes[point.words :], self.lines[point.lines :]

    def row(self, y: float, segments: list[Segment], x_min: float, x_max: float) -> float:
        """Draw segments sharing one baseline and record them as one line.

        Args:
            y: Top of the row in page pixels.
            segments: Text runs to draw; empty texts are skipped.
            x_min: Left limit of the region the row must stay in.
            x_max: Right limit of the region the row must stay in.

        Returns:
            The y coordinate of the row's baseline.

        Raises:
            LayoutOverflow: If any text leaves the region or the page bottom.
        """
        segments = [s for s in segments if s.text.strip()]
        if not segments:
            return y
        baseline = y + max(s.font.getmetrics()[0] for s in segments)
        placed = sorted(((self._left(s), s) for s in segments), key=lambda item: item[0])
        for left, seg in placed:
            self._check(left, left + seg.font.getlength(seg.text), baseline, seg, x_min, x_max)
        self._check_overlap(placed)
        first_word = len(self.words)
        draw = ImageDraw.Draw(self.image)
        for left, seg in placed:
            draw.text((left, baseline), seg.text, font=seg.font, fill=seg.fill, anchor="ls")
            self._record_words(left, baseline, seg)
        self._record_line(first_word)
        return baseline

    def hline(
        self, x0: float, x1: float, y: float, width: int = 1, fill: tuple[int, int, int] = INK
    ) -> None:
        """Draw a horizontal rule.

        Args:
            x0: Left end.
            x1: Right end.
            y: Vertical position.
            width: Stroke width in pixels.
            fill: RGB colour.
        """
        ImageDraw.Draw(self.image).line([(x0, y), (x1, y)], fill=fill, width=width)

    def line(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        width: int = 1,
        fill: tuple[int, int, int] = INK,
    ) -> None:
        """Draw a straight line segment (grid lines, checkbox ticks).

        Args:
            start: First end point.
            end: Second end point.
            width: Stroke width in pixels.
            fill: RGB colour.
        """
        ImageDraw.Draw(self.image).line([start, end], fill=fill, width=width)

    def rect(
        self, box: tuple[float, float, float, float], outline=None, fill=None, width: int = 1
    ) -> None:
        """Draw a rectangle (cell border, shading, form box).

        Args:
            box: ``(x0, y0, x1, y1)`` in page pixels.
            outline: Border colour or None.
            fill: Fill colour or None.
            width: Border width in pixels.
        """
        ImageDraw.Draw(self.image).rectangle(box, outline=outline, fill=fill, width=width)

    def shape(
        self, kind: str, box: tuple[float, float, float, float], fill: tuple[int, int, int]
    ) -> None:
        """Draw a simple logo shape (no text).

        Args:
            kind: ``"circle"``, ``"square"`` or ``"diamond"``.
            box: Bounding box of the shape.
            fill: RGB colour.

        Raises:
            ValueError: If ``kind`` is unknown.
        """
        draw = ImageDraw.Draw(self.image)
        x0, y0, x1, y1 = box
        if kind == "circle":
            draw.ellipse(box, fill=fill)
        elif kind == "square":
            draw.rounded_rectangle(box, radius=(x1 - x0) / 5, fill=fill)
        elif kind == "diamond":
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
        else:
            raise ValueError(f"unknown logo shape {kind!r}")

    def _left(self, seg: Segment) -> float:
        width = seg.font.getlength(seg.text)
        offsets = {"left": 0.0, "right": width, "center": width / 2}
        if seg.align not in offsets:
            raise ValueError(f"unknown alignment {seg.align!r}")
        return seg.x - offsets[seg.align]

    def _check(
        self, left: float, right: float, baseline: float, seg: Segment, x_min: float, x_max: float
    ) -> None:
        descent = seg.font.getmetrics()[1]
        inside_x = left >= max(x_min, 0) - 0.5 and right <= min(x_max, self.width) + 0.5
        if not inside_x or baseline + descent > self.bottom:
            raise LayoutOverflow(f"{seg.text!r} does not fit at x={left:.0f}..{right:.0f}")

    @staticmethod
    def _check_overlap(placed: list[tuple[float, Segment]]) -> None:
        # Segments on one row need a visible gap, or label and value would
        # merge into one word for a reader (and for the OCR-style ground truth).
        for (left, seg), (next_left, _) in itertools.pairwise(placed):
            if left + seg.font.getlength(seg.text) + 0.3 * seg.font.size > next_left:
                raise LayoutOverflow(f"{seg.text!r} collides with the next text on its row")

    def _record_words(self, left: float, baseline: float, seg: Segment) -> None:
        # Vertical extent is the same for every word of a font (cap top to
        # descender), like the line-level boxes OCR engines report.
        _, top, _, bottom = seg.font.getbbox("Hg", anchor="ls")
        for match in _WORD.finditer(seg.text):
            x = left + seg.font.getlength(seg.text[: match.start()])
            x0, _, x1, _ = seg.font.getbbox(match.group(), anchor="ls")
            self.words.append(match.group())
            self.boxes.append(
                [
                    round(x + x0, 1),
                    round(baseline + top, 1),
                    round(x + x1, 1),
                    round(baseline + bottom, 1),
                ]
            )

    def _record_line(self, first_word: int) -> None:
        boxes = self.boxes[first_word:]
        if not boxes:
            return
        box = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        self.lines.append({"text": " ".join(self.words[first_word:]), "box": box})
