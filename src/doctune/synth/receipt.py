"""Point-of-sale receipt builder."""

from __future__ import annotations

import random

from doctune.synth import blocks as b
from doctune.synth import parts, values, vocab
from doctune.synth.style import random_style


def _store(rng: random.Random) -> str:
    owner = rng.choice((rng.choice(vocab.COMPANY_WORDS), rng.choice(vocab.SURNAMES) + "'s"))
    # Long owner names with two-word store types would not fit the narrow strip.
    kinds = [k for k in vocab.STORE_TYPES if len(owner) + len(k) <= 18] or ["Mart"]
    return f"{owner} {rng.choice(kinds)}"


def _clock(rng: random.Random) -> str:
    hour, minute = rng.randint(7, 21), rng.randint(0, 59)
    if rng.random() < 0.6:
        return f"{hour:02d}:{minute:02d}"
    return f"{(hour - 1) % 12 + 1}:{minute:02d} {'PM' if hour >= 12 else 'AM'}"


def _item_rows(items: list[parts.Item], money: values.Currency, style: str) -> tuple:
    """Return ``(label, amount)`` rows; quantities print as ``2 x Milk`` or ``Milk 2 @ 1.50``."""
    rows = []
    for item in items:
        if item.quantity == 1:
            label = item.description
        elif style == "x":
            label = f"{item.quantity} x {item.description}"
        else:
            label = f"{item.description} {item.quantity} @ {money.number(item.unit_cents)}"
        rows.append((label, money.number(item.amount_cents)))
    return tuple(rows)


def _payment(rng: random.Random, total: int, money: values.Currency, fields: dict) -> tuple:
    """Return payment rows, recording card digits or cash tendered in ``fields``."""
    if rng.random() < 0.65:
        digits = f"{rng.randint(0, 9999):04d}"
        brand = rng.choice(vocab.CARD_BRANDS)
        fields.update(card_last_digits=digits, payment_method=brand)
        return ((brand, f"**** {digits}"),)
    tendered = total + rng.choice((0, 0, rng.randint(1, 2000)))
    tendered = -(-tendered // 500) * 500  # customers hand over round amounts
    fields.update(cash_tendered=money.number(tendered), change=money.number(tendered - total))
    return (("Cash", fields["cash_tendered"]), ("Change", fields["change"]))


def _receipt_values(rng: random.Random, money: values.Currency) -> tuple[list, int, dict, dict]:
    """Draw the items, total (in hundredths) and field values of a receipt."""
    date_fmt = rng.choice(values.DATE_FORMATS[:3])  # receipts print compact dates
    items = parts.line_items(
        rng, rng.randint(3, 6), vocab.GROCERIES, max_qty=rng.choice((1, 3)), price_range=(60, 1500)
    )
    subtotal = sum(i.amount_cents for i in items)
    tax = round(subtotal * rng.choice((0.05, 0.06, 0.07, 0.08)))
    fields = {
        "store_name": _store(rng),
        "store_phone": values.phone(rng, rng.randrange(4)),
        "date": values.format_date(values.random_date(rng), date_fmt),
        "time": _clock(rng),
        "receipt_number": values.reference(rng, ("R", "TRN", "#")),
        "cashier": rng.choice(vocab.FIRST_NAMES),
        "subtotal": money.number(subtotal),
        "tax": money.number(tax),
        "total": money.money(subtotal + tax),
    }
    contexts = {f"item_{k}_amount": item.description for k, item in enumerate(items, 1)}
    fields.update(
        {key: money.number(item.amount_cents) for key, item in zip(contexts, items, strict=True)}
    )
    return items, subtotal + tax, fields, contexts


def _header(rng: random.Random, fields: dict[str, str]) -> list:
    return [
        b.Text(fields["store_name"], rel=1.3, bold=True, align="center", head=True),
        b.Text(values.street_address(rng), align="center"),
        b.Text(values.city_line(rng), align="center"),
        b.Extra((b.Text(f"Tel {fields['store_phone']}", align="center"),)),
        b.Gap(0.3),
    ]


def _meta(rng: random.Random, fields: dict[str, str]) -> b.Pairs:
    return b.Pairs(
        (
            ("Date", fields["date"]),
            ("Time", fields["time"]),
            (rng.choice(("Receipt", "Trans #", "Receipt No.")), fields["receipt_number"]),
            (rng.choice(("Cashier", "Served by")), fields["cashier"]),
        ),
        mode="inline",
    )


def build_receipt(rng: random.Random) -> b.DocSpec:
    """Build a random shop receipt.

    Args:
        rng: Random source.

    Returns:
        The document spec.
    """
    style = random_style(rng, family=rng.choice(("mono", "mono", "sans")))
    money = rng.choice(values.CURRENCIES)
    items, total_cents, fields, contexts = _receipt_values(rng, money)
    item_rows = _item_rows(items, money, rng.choice(("x", "@")))
    totals = (
        ("Subtotal", fields["subtotal"]),
        ("Tax", fields["tax"]),
        (rng.choice(("TOTAL", "Total", "Amount Due")), fields["total"]),
    )
    thanks = rng.choice(("Thank you for shopping!", "Thank you, come again", "Keep this receipt"))
    body = [
        *_header(rng, fields),
        _meta(rng, fields),
        b.Rule(dashed=True),
        b.Pairs(item_rows, mode="columns", align="right", colon=False),
        b.Rule(dashed=True),
        b.Pairs(totals, mode="columns", align="right", bold_last=True),
        b.Pairs(
            _payment(rng, total_cents, money, fields), mode="columns", align="right", colon=False
        ),
        b.Extra((b.Rule(dashed=True), b.Text(thanks, align="center"))),
    ]
    width = rng.uniform(0.76, 0.9)
    return b.DocSpec(style, body, fields, contexts, content_width=width)
