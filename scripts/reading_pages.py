"""Pages to learn reading from: a generic renderer and the non-invoice synth kinds.

Each page comes with its characters' centres (for the dense per-patch objectives of the
pre-training) and question/answer pairs. Invoices, the demo's target domain, never appear here.
"""

from __future__ import annotations

import importlib
import os
import random
import string
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from row_questions import TRANSCRIBE, add_precede_questions, follow_questions, transcribe_question

TARGET_KIND = "invoice"  # the demo's target kind: held out of pre-training, evaluated zero-shot


# ----------------------------------------------------------------------------------------------
# Generic reading pages (own renderer; never invoices)
# ----------------------------------------------------------------------------------------------


@dataclass
class Page:
    image: Image.Image
    chars: list  # (char, cx, cy, line_index) in page pixels, spaces excluded
    qa: list  # (question, answer)
    kind: str = "generic"
    lines: list = field(default_factory=list)


def _font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]


@lru_cache(maxsize=None)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(_font_dir(), name), size)


SYLL = ["ka", "lo", "ren", "ta", "mi", "sor", "vel", "an", "dor", "be", "ri", "nu", "pel", "tas", "gar", "in",
        "mon", "ste", "ul", "var", "zen", "co", "ha", "li", "bra", "fen", "os", "qui", "tor", "ye"]
LABELS = ["Date", "Reference", "Account No", "Customer ID", "Order No", "Due Date", "Phone", "Email", "Amount",
          "Balance", "Subtotal", "Tax", "Total", "Ship To", "Contact", "Store", "Cashier", "Terminal", "Branch",
          "Sort Code", "IBAN", "Period", "Opening Balance", "Closing Balance", "Delivery Date", "Buyer",
          "Supplier", "Vendor", "Payment Terms", "Currency", "Name", "Address", "City", "Postcode", "Country",
          "Department", "Signature", "Case No", "Policy No", "Member ID", "Room", "Guest", "Ticket",
          "Transaction ID", "Card", "Auth Code", "Approved By", "Project", "Version", "Weight", "Quantity",
          "Discount", "Deposit", "Change", "Cash", "VAT", "Net", "Gross", "Tel", "Fax", "Ref", "Status"]
TITLES = ["STATEMENT", "DELIVERY NOTE", "QUOTATION", "MEMO", "PACKING LIST", "REPORT", "RECEIPT", "ORDER FORM",
          "APPLICATION", "CERTIFICATE", "REMITTANCE ADVICE", "CREDIT NOTE", "WORK ORDER", "SUMMARY"]
COLUMNS = ["Item", "Description", "Qty", "Price", "Amount", "Date", "Debit", "Credit", "Code", "Unit", "Rate",
           "Hours", "Ref", "Balance", "Total", "Weight", "SKU", "Days"]
COUNTS = ("Qty", "Hours", "Days")
TABLE_QUESTIONS = ("What is the {head} for {name}?", "{head} of {name}?")  # a generic table's cell
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def word(rng: random.Random, cap: bool = True) -> str:
    w = "".join(rng.choice(SYLL) for _ in range(rng.randint(1, 3)))
    return w.capitalize() if cap else w


def value(rng: random.Random, hint: str = "") -> str:
    k = rng.randrange(12)
    if k == 0:
        return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2015, 2027)}"
    if k == 1:
        return f"{rng.randint(2015, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if k == 2:
        return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2015, 2027)}"
    if k in (3, 4):
        v = rng.randint(1, 999999) / 100
        s = f"{v:,.2f}"
        return rng.choice(["", "$", "€", "£"]) + s if rng.random() < 0.5 else s
    if k == 5:
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 3))) + "-" + str(
            rng.randint(100, 999999))
    if k == 6:
        return str(rng.randint(10, 99999999))
    if k == 7:
        return f"{word(rng)} {word(rng)}"
    if k == 8:
        return f"{word(rng, False)}@{word(rng, False)}.com"
    if k == 9:
        return f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    if k == 10:
        return f"{rng.randint(1, 999)} {word(rng)} St"
    return word(rng) + (" " + str(rng.randint(1, 99)) if rng.random() < 0.5 else "")


class GenericSheet:
    """A generic page being drawn top to bottom: the image, its exact character centres, its
    lines and its questions. Every random choice comes from ``rng`` in drawing order, so a seed
    gives the same page."""

    def __init__(self, rng: random.Random, width: int, key_anywhere: float = 0.0):
        self.rng, self.width, self.key_anywhere = rng, width, key_anywhere
        self.height = int(width * rng.choice([1.294, 1.414, 1.2, 1.35]))
        self.img = Image.new("RGB", (width, self.height), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.chars: list = []
        self.lines: list = []
        self.qa: list = []
        self.regular = rng.choice(["DejaVuSans.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"])
        self.size = rng.randint(14, 19)
        self.gap = int(self.size * rng.uniform(1.28, 1.6))
        self.margin = rng.randint(14, 36)
        self.y = self.margin
        self.used: set = set()  # labels already on the page: each is asked about once

    def put(self, x: float, y: float, text: str, fnt) -> float:
        """Draw ``text`` and record its character centres and its line; returns the end x."""
        self.draw.text((x, y), text, font=fnt, fill=(0, 0, 0))
        asc, desc = fnt.getmetrics()
        top, bottom = y + asc * 0.25, y + asc + desc * 0.3
        cy = (top + bottom) / 2
        li = len(self.lines)
        for i, ch in enumerate(text):
            if ch == " ":
                continue
            x0 = x + fnt.getlength(text[:i])
            x1 = x + fnt.getlength(text[: i + 1])
            self.chars.append((ch, (x0 + x1) / 2, cy, li))
        end = x + fnt.getlength(text)
        self.lines.append({"text": text, "box": (x, top, end, bottom)})
        return end

    def unput(self, x: float, y: float, w: float) -> None:
        """Take back the last line (drawn at ``x, y``, ``w`` wide): its value would not fit."""
        self.lines.pop()
        self.chars[:] = [ch for ch in self.chars if ch[3] < len(self.lines)]
        self.img.paste((255, 255, 255), (int(x), int(y), int(x + w), int(y + self.gap)))

    def full(self) -> bool:
        return self.y > self.height - self.margin - self.gap

    def title(self) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            title = rng.choice(TITLES)
        else:
            title = f"{word(rng)} {word(rng)} {rng.choice(['Ltd', 'GmbH', 'Inc', 'LLC', 'Co'])}"
        tf = font("DejaVuSans-Bold.ttf", self.size + rng.randint(3, 8))
        self.put(self.margin, self.y, title, tf)
        question = rng.choice(["What is the title of the document?", "What is written at the top of the page?"])
        self.qa.append((question, title))
        self.y += int(tf.size * 1.8)

    def key_values(self, cols: int) -> None:
        """2-6 rows of ``cols`` label/value pairs: inline, aligned in a column, or stacked."""
        rng, rf = self.rng, font(self.regular, self.size)
        rows = rng.randint(2, 6)
        colw = (self.width - 2 * self.margin) // cols
        sep = rng.choice([": ", ": ", " ", " # "])
        aligned = rng.random() < 0.5
        stacked = rng.random() < 0.25
        for _ in range(rows):
            if self.full():
                break
            for c in range(cols):
                label = rng.choice(LABELS)
                if label in self.used:
                    continue
                self.used.add(label)
                v = value(rng)
                x, y = self.margin + c * colw, self.y
                lab_text = label + sep.rstrip()
                if stacked and cols == 1:
                    self.put(x, y, label, font("DejaVuSans-Bold.ttf", max(10, self.size - 2)))
                    self.y += int(self.gap * 0.9)
                    self.put(x, self.y, v, rf)
                elif aligned:
                    lab_font = self.regular if rng.random() < 0.7 else "DejaVuSans-Bold.ttf"
                    self.put(x, y, lab_text, font(lab_font, self.size))
                    vx = x + min(colw * 0.45, rf.getlength("Opening Balance: ") + 4)
                    if vx + rf.getlength(v) > x + colw - 4:
                        self.unput(x, y, colw)
                        continue
                    self.put(vx, y, v, rf)
                else:
                    t = lab_text + " " + v
                    if rf.getlength(t) > colw - 4:
                        continue
                    self.put(x, y, t, rf)
                self.qa.append((question_for(rng, label), v))
            self.y += self.gap
        self.y += self.gap // 2

    def table(self) -> None:
        """A ruled header of 2-4 columns and 2-5 rows; one cell of each row is asked about, by the
        row's name. The name is in the first column, or with ``key_anywhere`` (a share of tables)
        in another, so that some answers lie left of the name; in that mode count columns ("Qty",
        "Hours", "Days") hold small integers, as an invoice's quantities do."""
        rng, rf = self.rng, font(self.regular, self.size)
        ncol = rng.randint(2, 4)
        heads = rng.sample(COLUMNS, ncol)
        key = rng.randrange(1, ncol) if self.key_anywhere and rng.random() < self.key_anywhere else 0
        colw = (self.width - 2 * self.margin) / ncol
        hf = font("DejaVuSans-Bold.ttf", self.size)
        for j, h in enumerate(heads):
            self.put(self.margin + j * colw, self.y, h, hf)
        self.draw.line((self.margin, self.y + self.gap - 3, self.width - self.margin, self.y + self.gap - 3),
                       fill=(90, 90, 90))
        self.y += self.gap
        for _ in range(rng.randint(2, 5)):
            if self.full():
                break
            row = [word(rng) if j == key else self.cell(heads[j]) for j in range(ncol)]
            row = [r if rf.getlength(r) < colw - 6 else r[: max(3, int(len(r) * (colw - 6) / rf.getlength(r)))]
                   for r in row]
            for j, cell in enumerate(row):
                self.put(self.margin + j * colw, self.y, cell, rf)
            j = rng.randrange(ncol - 1)
            j += j >= key  # any column but the name's
            self.qa.append((rng.choice([t.format(head=heads[j], name=row[key]) for t in TABLE_QUESTIONS]), row[j]))
            self.y += self.gap
        self.y += self.gap // 2

    def cell(self, head: str) -> str:
        """A value for a column headed ``head`` (not the row name's column)."""
        if self.key_anywhere and head in COUNTS:
            return str(self.rng.randint(1, 50))
        return value(self.rng)

    def text(self) -> None:
        """1-3 lines of words; a short line gets a transcription question."""
        rng, rf = self.rng, font(self.regular, self.size)
        for _ in range(rng.randint(1, 3)):
            if self.full():
                break
            t = " ".join(word(rng, rng.random() < 0.2) for _ in range(rng.randint(3, 9)))
            while rf.getlength(t) > self.width - 2 * self.margin:
                t = t.rsplit(" ", 1)[0]
            self.put(self.margin, self.y, t, rf)
            if len(t) <= 40:
                self.qa.append((TRANSCRIBE, t))  # worded in render_generic, once every line is known
            self.y += self.gap
        self.y += self.gap // 2


def render_generic(seed: int, width: int = 448, key_anywhere: float = 0.0) -> Page:
    """A page of title, key/value blocks, a table and text lines, with exact character centres
    (``key_anywhere``: see ``GenericSheet.table``)."""
    sheet = GenericSheet(random.Random(seed), width, key_anywhere)
    sheet.title()
    while sheet.y < sheet.height - sheet.margin - sheet.gap:
        block = sheet.rng.choices(["kv", "kv2", "table", "text"], [4, 2, 2, 1])[0]
        if block in ("kv", "kv2"):
            sheet.key_values(2 if block == "kv2" else 1)
        elif block == "table":
            sheet.table()
        else:
            sheet.text()
    # Only now are all the lines known that a line's first words must tell it apart from.
    texts = [line["text"] for line in sheet.lines]
    qa = [transcribe_question(a, texts) if q.startswith(TRANSCRIBE) else (q, a) for q, a in sheet.qa]
    qa = [x for x in qa if x is not None]
    qa += follow_questions(sheet.lines, sheet.rng) + follow_questions(sheet.lines, sheet.rng, n=1, max_len=120,
                                                                      across_rows=True)
    return Page(sheet.img, sheet.chars, qa, "generic", sheet.lines)


def question_for(rng: random.Random, label: str) -> str:
    return rng.choice([f"What is the {label}?", f"What is the {label.lower()}?", f"{label}?",
                       f"What is written next to \"{label}\"?", f"Read the {label.lower()}."])


# ----------------------------------------------------------------------------------------------
# Synthetic business documents of the other engineer (non-invoice kinds only)
# ----------------------------------------------------------------------------------------------


def synth_available() -> bool:
    try:
        importlib.import_module("doctune.synth")
    except ImportError:
        return False
    return True


@lru_cache(maxsize=4096)
def advance_edges(text: str) -> tuple:
    """Cumulative advance of each character of ``text`` as a fraction of the whole (0 ... 1)."""
    f = font("DejaVuSans.ttf", 100)
    total = max(f.getlength(text), 1e-6)
    return tuple(f.getlength(text[:i]) / total for i in range(len(text) + 1))


def synth_page(kind: str, seed: int, rng: random.Random, all_rows: bool = False) -> Page:
    """A ``doctune.synth`` page with its character centres and questions.

    ``all_rows`` adds a question about every line-item and transaction cell the document's own
    questions leave out (they keep three per page), for a table-reading curriculum.
    """
    from doctune.synth import generate_document
    from doctune.synth.questions import row_qa

    import party_pages

    doc = party_pages.generate(seed) if kind == party_pages.KIND else generate_document(kind, seed)
    chars = []
    boxes = list(getattr(doc, "bounding_boxes", []) or [])
    words = list(getattr(doc, "words", []) or [])
    line_of = {}
    for li, line in enumerate(getattr(doc, "lines", []) or []):
        line_of[li] = line
    for wi, (w, b) in enumerate(zip(words, boxes)):
        x0, y0, x1, y1 = b
        # The document keeps word boxes only: place each character by its DejaVu Sans advance,
        # scaled to the box (an even split puts centres of 'i' and 'm' pixels off, which moves
        # characters across patch borders and teaches the patch head noise).
        edges = advance_edges(w)
        for i, ch in enumerate(w):
            if ch == " ":
                continue
            cx = x0 + (edges[i] + edges[i + 1]) / 2 * (x1 - x0)
            chars.append((ch, cx, (y0 + y1) / 2, wi))
    qa = [(q, a) for q, a in doc.qa if 0 < len(str(a)) <= 48]
    lines = list(getattr(doc, "lines", []) or [])
    texts = [line["text"] if isinstance(line, dict) else str(line) for line in lines]
    for t in texts:
        if 3 < len(t) <= 40 and rng.random() < 0.3 and (question := transcribe_question(t, texts)):
            qa.append(question)
    # A generator of its own: the caller's draws (and so earlier evaluation sets) stay as they were.
    own = random.Random(seed)
    boxed = [l for l in lines if isinstance(l, dict)]
    qa += follow_questions(boxed, own) + follow_questions(boxed, own, n=1, max_len=120, across_rows=True)
    if all_rows:
        asked = {a for _, a in qa}
        qa += [x for x in row_qa(doc, own) if x[1] not in asked]
    return Page(doc.image.convert("RGB"), chars, qa, kind, lines)


def sample_pages(args, rng: random.Random, n: int, use_synth: bool) -> list:
    """``n`` training pages: a ``args.synth_frac`` share from the synth kinds, the rest generic."""
    pages = []
    for _ in range(n):
        if use_synth and rng.random() < args.synth_frac:
            kind, seed = rng.choice(args.kinds), rng.randrange(10 ** 8)
            pages.append(synth_page(kind, seed, rng, args.all_rows))
        else:
            seed = rng.randrange(10 ** 8)
            pages.append(render_generic(seed, key_anywhere=args.key_anywhere))
        if args.precede:
            # A generator of its own, so that the pages are those drawn without the option, and not
            # the page's: synth_page's follow questions draw from random.Random(seed), and the same
            # draws would split the same rows at the same words.
            add_precede_questions(pages[-1], random.Random(f"precede {seed}"), args.precede)
    return pages
