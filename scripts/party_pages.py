"""Business pages with several parties and a line-item table, to pre-train telling them apart.

Quotations, delivery notes, work orders and the like (never invoices): an issuer's letterhead, one
or two addressed parties under headings that say their role ("Ship To", "Client", "Remit To"...),
a reference, dates, 2-5 line items and totals. The questions ask for a party by its role, in
words that differ from the heading, for e-mail addresses that only the role tells apart, and for
every cell of the table by its item. They were written to test whether the errors left on the
demo's invoices after fine-tuning were the wrong party and the wrong row; stage 75 found they
were not (docs/pretrain.md). "bill" and "invoice" appear nowhere here, so the link from "billed
to" to its block is still learned in fine-tuning only.
"""

from __future__ import annotations

import datetime as dt
import random

from doctune.synth import blocks as b
from doctune.synth import parts, values, vocab
from doctune.synth.canvas import LayoutOverflow
from doctune.synth.document import Document, derive_seed, layout
from doctune.synth.questions import count_runs, row_qa
from doctune.synth.style import random_style

KIND = "parties"

# (title, the word the questions use for the document)
TITLES = (("QUOTATION", "quotation"), ("Quotation", "quotation"), ("ESTIMATE", "estimate"),
          ("DELIVERY NOTE", "delivery note"), ("Delivery Note", "delivery note"), ("WORK ORDER", "work order"),
          ("PACKING SLIP", "packing slip"), ("SALES ORDER", "sales order"), ("CREDIT NOTE", "credit note"),
          ("ORDER CONFIRMATION", "order confirmation"), ("SERVICE REPORT", "service report"))

# role -> (headings, the noun the questions use, questions for the party's name)
ROLES = {
    "customer": (("Customer", "Client", "Sold To", "Prepared For", "Quote For"), "customer",
                 ("Who is the customer?", "What is the name of the customer?", "Who is the client?",
                  "To whom is this {doc} addressed?", "Who is this {doc} for?")),
    "recipient": (("Ship To", "Deliver To", "Delivery Address", "Consignee"), "recipient",
                  ("Who are the goods shipped to?", "Who receives the delivery?",
                   "To whom will the goods be delivered?", "Who is the consignee?")),
    "payee": (("Remit To", "Pay To", "Payee", "Send Payment To"), "payee",
              ("Who should payment be sent to?", "Who is the payee?", "To whom is payment made?")),
    "supplier": (("Supplier", "Vendor", "Contractor", "Service Provider"), "supplier",
                 ("Who is the supplier?", "Which contractor is named?", "Who provides the goods or services?")),
}
ISSUER = ("Which company issued this {doc}?", "Who is the {doc} from?",
          "What is the name of the company that sent the {doc}?", "Whose letterhead is on the {doc}?")
ISSUER_EMAIL = ("What email address is given for the company that issued the {doc}?",
                "What is the email address in the letterhead?")
ISSUER_PHONE = ("What phone number is given for the company that issued the {doc}?",
                "What is the phone number in the letterhead?")
UNDER = ("Who is listed under \"{heading}\"?", "What name is given under {heading}?")
EMAIL = ("What is the {noun}'s email address?", "What email address is given for the {noun}?")
PHONE = ("What is the {noun}'s phone number?", "Which phone number is listed for the {noun}?")
OTHER = {
    "number": ("What is the {doc} number?", "Which {doc} number is shown?", "What is the reference number?"),
    "date": ("What is the date of the {doc}?", "When was the {doc} issued?"),
    "subtotal": ("What is the subtotal?", "What is the amount before {extra}?"),
    "extra": ("How much is the {extra}?", "What is the {extra} amount?"),
    "total": ("What is the total?", "What is the total of the {doc}?", "How much is the total?"),
}
# the second date's label -> its questions
SECOND_DATES = {
    "Valid Until": ("Until when is the {doc} valid?", "What is the last day the {doc} is valid?"),
    "Delivery Date": ("What is the delivery date?", "When will the goods be delivered?"),
    "Ship Date": ("What is the ship date?", "When will the goods be shipped?"),
    "Due Date": ("What is the due date?", "By what date is payment due?"),
    "Completion Date": ("When is the work to be completed?", "What is the completion date?"),
}


def _party_block(rng: random.Random, heading: str, party: parts.Party) -> tuple:
    rows = list(parts.address_block(heading, party, with_street=rng.random() < 0.6))
    contact = rng.choice(((), ("email",), ("phone",), ("email", "phone")))
    rows += [b.Text(party.email if c == "email" else party.phone) for c in contact]
    return tuple(rows)


def build(rng: random.Random):
    """The spec, plus the name, e-mail and phone questions the generic templates cannot word."""
    style = random_style(rng)
    money, date_fmt = rng.choice(values.CURRENCIES), rng.choice(values.DATE_FORMATS)
    title, doc = rng.choice(TITLES)
    phone_style = rng.randrange(4)
    issuer = parts.company(rng, phone_style)
    roles = rng.sample(sorted(ROLES), rng.choice((1, 2, 2)))
    parties = [(parts.company if rng.random() < 0.6 else parts.person)(rng, phone_style) for _ in roles]
    issued = values.random_date(rng)
    second = rng.choice(sorted(SECOND_DATES))
    items = parts.line_items(rng, rng.randint(2, 5), vocab.PRODUCTS + vocab.SERVICES,
                             max_qty=rng.choice((12, 40)), price_range=(150, 60000))
    subtotal = sum(i.amount_cents for i in items)
    extra_label = rng.choice(("Tax", "Shipping", "Discount", "Handling"))
    extra = rng.randint(300, 9000) if extra_label != "Tax" else round(subtotal * rng.choice((0.05, 0.1, 0.2)))
    total = subtotal - extra if extra_label == "Discount" else subtotal + extra
    fields = {
        "issuer_name": issuer.name, "issuer_email": issuer.email, "issuer_phone": issuer.phone,
        "number": values.reference(rng, ("QT", "EST", "DN", "WO", "SO", "REF"), issued.year),
        "date": values.format_date(issued, date_fmt),
        "second_date": values.format_date(issued + dt.timedelta(days=rng.randint(5, 60)), date_fmt),
        "subtotal": money.money(subtotal), "extra": money.money(extra), "total": money.money(total),
    }
    contexts: dict[str, str] = {}
    parts.item_fields(items, money, fields, contexts)
    wording = {k: [t.format(doc=doc, extra=extra_label.lower()) for t in v] for k, v in OTHER.items()}
    wording["second_date"] = [t.format(doc=doc) for t in SECOND_DATES[second]]
    wording["issuer_name"] = [t.format(doc=doc) for t in ISSUER]
    wording["issuer_email"] = [t.format(doc=doc) for t in ISSUER_EMAIL]
    wording["issuer_phone"] = [t.format(doc=doc) for t in ISSUER_PHONE]
    blocks = []
    for i, (role, party) in enumerate(zip(roles, parties)):
        headings, noun, asks = ROLES[role]
        heading = rng.choice(headings)
        blocks.append(_party_block(rng, heading, party))
        fields[f"party{i}_name"], fields[f"party{i}_email"] = party.name, party.email
        fields[f"party{i}_phone"] = party.phone
        wording[f"party{i}_name"] = [t.format(doc=doc) for t in asks] + [t.format(heading=heading) for t in UNDER]
        wording[f"party{i}_email"] = [t.format(noun=noun) for t in EMAIL]
        wording[f"party{i}_phone"] = [t.format(noun=noun) for t in PHONE]
    meta = b.Pairs(((rng.choice(("No.", "Number", "Ref", f"{title.title()} No.")), fields["number"]),
                    (rng.choice(("Date", "Issued", "Date Issued")), fields["date"]),
                    (second, fields["second_date"])))
    if len(blocks) == 2:
        head = [b.Columns(blocks[0], blocks[1], split=0.5), b.Gap(0.2), meta]
    else:
        head = [b.Columns(blocks[0], (meta,), split=0.45)]
    totals = (("Subtotal", fields["subtotal"]), (extra_label, fields["extra"]),
              (rng.choice(("Total", "Grand Total", "Total Amount")), fields["total"]))
    body = [
        *parts.letterhead(rng, style, issuer, title),
        *head,
        b.Gap(0.2),
        parts.items_table(rng, items, money),
        b.Columns((), (b.Pairs(totals, mode="columns", align="right", bold_last=True),), split=0.45),
    ]
    return b.DocSpec(style, body, fields, contexts), wording


def generate(seed: int, width: int = 448) -> Document:
    """One page with questions about every field whose value appears on it exactly once (the
    table's cells through ``row_qa``, as ``--all-rows`` asks for the other kinds)."""
    rng = random.Random(derive_seed("doc", KIND, seed))
    for _ in range(20):  # a draw too long for the page is drawn again, from the same generator
        spec, wording = build(rng)
        try:
            canvas = layout(spec, width)
            break
        except LayoutOverflow:
            continue
    else:
        raise LayoutOverflow(f"{KIND} page {seed}: 20 draws in turn did not fit a page {width} px wide")
    fields = {k: v for k, v in spec.fields.items() if count_runs(canvas.words, v) > 0}
    contexts = {k: v for k, v in spec.contexts.items() if k in fields}
    qa = [(rng.choice(wording[k]), v) for k, v in fields.items()
          if k in wording and count_runs(canvas.words, v) == 1]
    document = Document(canvas.image, KIND, qa, canvas.words, canvas.boxes, canvas.lines, fields, contexts)
    document.qa += row_qa(document, rng)
    return document
