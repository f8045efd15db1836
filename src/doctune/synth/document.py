"""Public entry point: render one synthetic document with its questions."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from doctune.synth import blocks as b
from doctune.synth.canvas import Canvas, LayoutOverflow
from doctune.synth.commerce import build_invoice, build_purchase_order
from doctune.synth.noise import apply_noise
from doctune.synth.questions import count_runs, make_qa
from doctune.synth.receipt import build_receipt
from doctune.synth.records import build_bank_statement, build_form
from doctune.synth.render import Renderer

BUILDERS = {
    "invoice": build_invoice,
    "receipt": build_receipt,
    "purchase_order": build_purchase_order,
    "form": build_form,
    "bank_statement": build_bank_statement,
}
KINDS: tuple[str, ...] = tuple(BUILDERS)
# Layout attempts (scale, draw optional blocks) in order; the smallest scale
# still keeps capitals about 8 px tall when a page is shown 384 px high.
ATTEMPTS: tuple[tuple[float, bool], ...] = ((1.0, True), (1.0, False), (0.95, False), (0.9, False))
MIN_WIDTH = 160


@dataclass
class Document:
    """A rendered synthetic page with its ground truth.

    Attributes:
        image: The page (RGB), including scan noise if requested.
        kind: Document kind (one of ``KINDS``).
        qa: ``(question, answer)`` pairs; every answer is a run of ``words``.
        words: Every drawn word, in reading order.
        bounding_boxes: ``[x0, y0, x1, y1]`` per word, in page pixels before noise.
        lines: ``{"text", "box"}`` per drawn text line.
        fields: Field key -> displayed value, for every field shown on the page.
        contexts: Field key -> the row or label name its questions use (``item_2_amount`` ->
            the item's description), for the fields that have one.
    """

    image: Image.Image
    kind: str
    qa: list[tuple[str, str]]
    words: list[str]
    bounding_boxes: list[list[float]]
    lines: list[dict]
    fields: dict[str, str]
    contexts: dict[str, str]


def derive_seed(*parts: object) -> int:
    """Hash values into a 128-bit seed (stable across runs and platforms).

    128 bits make collisions between distinct inputs (e.g. two dataset base
    seeds) practically impossible, unlike small arithmetic seed offsets.

    Args:
        *parts: Values whose ``str`` forms identify the stream.

    Returns:
        A non-negative 128-bit integer.
    """
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def layout(spec: b.DocSpec, width: int) -> Canvas:
    """Render a spec, shrinking the scale until it fits the page.

    Args:
        spec: Document spec.
        width: Page width in pixels.

    Returns:
        The filled canvas.

    Raises:
        LayoutOverflow: If the document does not fit even at the smallest scale.
    """
    height = round(width * spec.style.ratio)
    margin = spec.style.margin * width
    # Narrow documents (receipts) are centred; the margin still applies.
    left = max(margin, (1.0 - spec.content_width) / 2 * width)
    failure: LayoutOverflow | None = None
    for scale, extras in ATTEMPTS:
        canvas = Canvas(width, height, margin)
        renderer = Renderer(canvas, spec.style, scale, extras)
        try:
            renderer.render(spec.blocks, left, width - left, margin)
            return canvas
        except LayoutOverflow as error:
            failure = error  # retried smaller; re-raised below if nothing fits
    raise LayoutOverflow(f"document does not fit a {width}x{height} page") from failure


def generate_document(kind: str, seed: int, width: int = 448, noise: float = 0.0) -> Document:
    """Generate one synthetic document deterministically from a seed.

    Args:
        kind: One of ``KINDS``.
        seed: Seed; the same (kind, seed, width, noise) gives the same bytes.
        width: Page width in pixels (height is 1.30-1.41 times larger).
        noise: Scan-noise strength in ``[0, 1]``.

    Returns:
        The document.

    Raises:
        ValueError: If ``kind``, ``width`` or ``noise`` is invalid.
    """
    if kind not in BUILDERS:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {KINDS}")
    if width < MIN_WIDTH:
        raise ValueError(f"width must be at least {MIN_WIDTH}, got {width}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    # Mixing the kind in keeps documents of different kinds with equal seeds unrelated.
    rng = random.Random(derive_seed("doc", kind, seed))
    spec = BUILDERS[kind](rng)
    canvas = layout(spec, width)
    # Optional blocks may have been dropped to fit: keep only fields on the page.
    fields = {k: v for k, v in spec.fields.items() if count_runs(canvas.words, v) > 0}
    qa = make_qa(kind, fields, spec.contexts, canvas.words, rng)
    noise_rng = np.random.default_rng(derive_seed("noise", kind, seed))
    image = apply_noise(canvas.image, noise, noise_rng)
    contexts = {k: v for k, v in spec.contexts.items() if k in fields}
    return Document(image, kind, qa, canvas.words, canvas.boxes, canvas.lines, fields, contexts)
