"""Building blocks shared by the document builders (parties, letterheads, items)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from doctune.synth import blocks as b
from doctune.synth import values
from doctune.synth.style import Style


@dataclass(frozen=True)
class Party:
    """A company or person appearing on a document.

    Attributes:
        name: Display name.
        street: Street address line.
        city: City line.
        phone: Phone number.
        email: Email address.
    """

    name: str
    street: str
    city: str
    phone: str
    email: str


@dataclass(frozen=True)
class Item:
    """One line item.

    Attributes:
        description: Item text (unique within a document).
        quantity: Number of units.
        unit_cents: Unit price in hundredths.
    """

    description: str
    quantity: int
    unit_cents: int

    @property
    def amount_cents(self) -> int:
        """Line total in hundredths."""
        return self.quantity * self.unit_cents


def company(rng: random.Random, phone_style: int) -> Party:
    """Return a random company with address and contact details.

    Args:
        rng: Random source.
        phone_style: Phone notation used throughout the document.

    Returns:
        The company.
    """
    name = values.company_name(rng)
    mailbox = rng.choice(("info", "billing", "sales", "office", "accounts"))
    return Party(
        name,
        values.street_address(rng),
        values.city_line(rng),
        values.phone(rng, phone_style),
        f"{mailbox}@{values.domain_for(name)}",
    )


def person(rng: random.Random, phone_style: int) -> Party:
    """Return a random person with address and contact details.

    Args:
        rng: Random source.
        phone_style: Phone notation used throughout the document.

    Returns:
        The person.
    """
    name = values.person_name(rng, initial=rng.random() < 0.2)
    return Party(
        name,
        values.street_address(rng),
        values.city_line(rng),
        values.phone(rng, phone_style),
        values.email(rng, name),
    )


def letterhead(rng: random.Random, style: Style, org: Party, title: str) -> list:
    """Return blocks for an organisation letterhead and the document title.

    Args:
        rng: Random source (chooses the variant and contact lines).
        style: Document style (alignment, logo).
        org: Issuing organisation.
        title: Document title such as ``"INVOICE"``.

    Returns:
        Blocks in reading order.
    """
    contact = rng.choice((("phone",), ("email",), ("phone",), ()))
    lines = _org_lines(rng, style.header_align, org, contact)
    title_block = b.Text(
        title,
        rel=rng.choice((1.45, 1.6, 1.75)),
        bold=True,
        head=True,
        color=rng.choice(("ink", "accent")),
    )
    variant = rng.randrange(3)
    if variant == 0:
        side = "right" if style.header_align != "right" else "left"
        title_block = b.Text(
            title_block.text, title_block.rel, True, align=side, head=True, color=title_block.color
        )
        return [b.Columns(tuple(lines), (title_block,), split=0.62), b.Rule(thick=2)]
    align = "center" if variant == 1 else style.header_align
    title_block = b.Text(
        title_block.text, title_block.rel, True, align=align, head=True, color=title_block.color
    )
    return [*lines, b.Rule(thick=rng.choice((1, 2))), title_block, b.Gap(0.2)]


def _org_lines(rng: random.Random, align: str, org: Party, contact: tuple[str, ...]) -> list:
    """Return the organisation name, address and contact rows."""
    logo = (b.Extra((b.Logo(align),)),) if rng.random() < 0.5 else ()
    tel = rng.choice(("Tel:", "Phone:", "Ph."))
    extra = []
    if "phone" in contact:
        extra.append(b.Text(f"{tel} {org.phone}", align=align))
    if "email" in contact:
        extra.append(b.Text(org.email, align=align))
    return [
        *logo,
        b.Text(
            org.name, rel=rng.choice((1.2, 1.3)), bold=True, align=align, head=True, color="accent"
        ),
        b.Text(org.street, align=align),
        b.Text(org.city, align=align),
        b.Extra(tuple(extra)),
    ]


def address_block(heading: str, party: Party, with_street: bool = True) -> tuple:
    """Return blocks for a headed address (``Bill To``, ``Vendor``...).

    Args:
        heading: Heading text.
        party: The addressee.
        with_street: Whether to include street and city rows (optional blocks).

    Returns:
        A tuple of blocks.
    """
    rows = [b.Text(heading, bold=True, color="accent"), b.Text(party.name)]
    if with_street:
        rows.append(b.Extra((b.Text(party.street), b.Text(party.city))))
    return tuple(rows)


def line_items(
    rng: random.Random,
    count: int,
    pool: tuple[str, ...],
    max_qty: int = 12,
    price_range: tuple[int, int] = (200, 45000),
) -> list[Item]:
    """Return ``count`` line items with unique descriptions.

    Args:
        rng: Random source.
        count: Number of items.
        pool: Descriptions to sample from.
        max_qty: Largest quantity.
        price_range: Unit price range in hundredths.

    Returns:
        The items.
    """
    names = rng.sample(pool, count)
    items = []
    for name in names:
        cents = rng.randint(*price_range)
        # Round prices like real price lists do (.00, .50, .95, .99 endings are common).
        cents = cents - cents % 100 + rng.choice((0, 0, 50, 95, 99, cents % 100))
        items.append(Item(name, rng.randint(1, max_qty), max(cents, 50)))
    return items


ITEM_HEADERS: tuple[tuple[str, str, str, str], ...] = (
    ("Description", "Qty", "Unit Price", "Amount"),
    ("Item", "Quantity", "Price", "Total"),
    ("Description", "Qty", "Rate", "Amount"),
    ("Product", "Units", "Unit Cost", "Total"),
    ("Item", "Qty", "Price", "Amount"),
)


def items_table(rng: random.Random, items: list[Item], money: values.Currency) -> b.Table:
    """Return a line-item table with a random header wording and column order.

    Args:
        rng: Random source.
        items: Line items.
        money: Currency formatting of the document.

    Returns:
        The table block.
    """
    header = rng.choice(ITEM_HEADERS)
    rows = [
        (i.description, str(i.quantity), money.number(i.unit_cents), money.number(i.amount_cents))
        for i in items
    ]
    order = (0, 1, 2, 3) if rng.random() < 0.75 else (1, 0, 2, 3)
    numeric = (False, True, True, True)
    return b.Table(
        tuple(header[k] for k in order),
        tuple(tuple(row[k] for k in order) for row in rows),
        tuple(numeric[k] for k in order),
    )


def item_fields(
    items: list[Item], money: values.Currency, fields: dict, contexts: dict, prefix: str = "item"
) -> None:
    """Record per-item quantity, unit price and amount fields.

    Args:
        items: Line items.
        money: Currency formatting of the document.
        fields: Field dict to fill.
        contexts: Context dict to fill (item description per field).
        prefix: Field key prefix.
    """
    for index, item in enumerate(items, 1):
        entries = {
            "quantity": str(item.quantity),
            "unit_price": money.number(item.unit_cents),
            "amount": money.number(item.amount_cents),
        }
        for name, value in entries.items():
            key = f"{prefix}_{index}_{name}"
            fields[key] = value
            contexts[key] = item.description
