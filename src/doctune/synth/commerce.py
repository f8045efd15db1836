"""Invoice and purchase-order builders."""

from __future__ import annotations

import datetime as dt
import random

from doctune.synth import blocks as b
from doctune.synth import parts, values, vocab
from doctune.synth.style import random_style

TAX_RATES: tuple[float, ...] = (5.0, 6.0, 7.5, 8.0, 8.25, 10.0, 12.5, 19.0, 20.0)


def _tax_label(rng: random.Random, rate: float) -> str:
    name = rng.choice(("Tax", "Sales Tax", "VAT"))
    return f"{name} ({rate:g}%)" if rng.random() < 0.6 else name


def _totals(rng: random.Random, rows: list[tuple[str, str]], notes: tuple) -> b.Columns:
    """Return a right-aligned totals block with optional notes on the left."""
    pairs = b.Pairs(tuple(rows), mode="columns", align="right", bold_last=True)
    return b.Columns(notes, (pairs,), split=rng.choice((0.42, 0.5)))


def _invoice_values(rng: random.Random, money: values.Currency, date_fmt: str):
    """Draw the parties, items and field values of an invoice."""
    phone_style = rng.randrange(4)
    seller = parts.company(rng, phone_style)
    is_company = rng.random() < 0.5
    customer = (parts.company if is_company else parts.person)(rng, phone_style)
    issued = values.random_date(rng)
    due = issued + dt.timedelta(days=rng.choice((10, 14, 15, 30, 45, 60)))
    items = parts.line_items(
        rng, rng.randint(2, 4), vocab.PRODUCTS + vocab.SERVICES, price_range=(200, 90000)
    )
    subtotal = sum(i.amount_cents for i in items)
    rate = rng.choice(TAX_RATES)
    tax = round(subtotal * rate / 100)
    fields = {
        "seller_name": seller.name,
        "seller_phone": seller.phone,
        "seller_email": seller.email,
        "invoice_number": values.reference(rng, ("INV", "IN", "INV", "BL"), issued.year),
        "invoice_date": values.format_date(issued, date_fmt),
        "due_date": values.format_date(due, date_fmt),
        "customer_name": customer.name,
        "subtotal": money.money(subtotal),
        "tax": money.money(tax),
        "total": money.money(subtotal + tax),
        "payment_terms": rng.choice(vocab.PAYMENT_TERMS),
    }
    return seller, customer, items, rate, fields


def _invoice_meta(rng: random.Random, fields: dict[str, str]) -> b.Pairs:
    meta = [
        (rng.choice(("Invoice No.", "Invoice #", "Invoice")), fields["invoice_number"]),
        (rng.choice(("Date", "Invoice Date", "Issued")), fields["invoice_date"]),
    ]
    if rng.random() < 0.7:
        meta.append((rng.choice(("Due Date", "Payment Due", "Due")), fields["due_date"]))
    return b.Pairs(tuple(meta))


def _invoice_footer(rng: random.Random) -> list:
    if rng.random() < 0.5:
        return []
    note = rng.choice(("Thank you for your business!", "Please quote the invoice number."))
    return [b.Extra((b.Gap(0.3), b.Text(note, italic=True, align="center", color="muted")))]


def build_invoice(rng: random.Random) -> b.DocSpec:
    """Build a random invoice.

    Args:
        rng: Random source.

    Returns:
        The document spec.
    """
    style = random_style(rng)
    money, date_fmt = rng.choice(values.CURRENCIES), rng.choice(values.DATE_FORMATS)
    seller, customer, items, rate, fields = _invoice_values(rng, money, date_fmt)
    contexts: dict[str, str] = {}
    parts.item_fields(items, money, fields, contexts)
    title = rng.choice(("INVOICE", "Invoice", "TAX INVOICE"))
    heading = rng.choice(("Bill To", "Billed To", "Customer"))
    bill_to = parts.address_block(heading, customer, with_street=rng.random() < 0.6)
    notes = (b.Extra((b.Text(f"Terms: {fields['payment_terms']}"),)),) if rng.random() < 0.5 else ()
    totals = [
        ("Subtotal", fields["subtotal"]),
        (_tax_label(rng, rate), fields["tax"]),
        (rng.choice(("Total", "Total Due", "Amount Due", "Balance Due")), fields["total"]),
    ]
    body = [
        *parts.letterhead(rng, style, seller, title),
        b.Columns(bill_to, (_invoice_meta(rng, fields),), split=0.45),
        b.Gap(0.2),
        parts.items_table(rng, items, money),
        _totals(rng, totals, notes),
        *_invoice_footer(rng),
    ]
    return b.DocSpec(style, body, fields, contexts)


def _order_values(rng: random.Random, money: values.Currency, date_fmt: str):
    """Draw the parties, items and field values of a purchase order."""
    phone_style = rng.randrange(4)
    buyer, vendor = parts.company(rng, phone_style), parts.company(rng, phone_style)
    ordered = values.random_date(rng)
    delivery = ordered + dt.timedelta(days=rng.randint(5, 40))
    items = parts.line_items(
        rng, rng.randint(2, 3), vocab.PRODUCTS, max_qty=40, price_range=(150, 30000)
    )
    subtotal = sum(i.amount_cents for i in items)
    shipping = rng.choice((0, 1500, 2500, 4999, rng.randint(800, 9000)))
    fields = {
        "buyer_name": buyer.name,
        "vendor_name": vendor.name,
        "po_number": values.reference(rng, ("PO", "P.O.", "PUR"), ordered.year),
        "order_date": values.format_date(ordered, date_fmt),
        "delivery_date": values.format_date(delivery, date_fmt),
        "payment_terms": rng.choice(vocab.PAYMENT_TERMS),
        "shipping_method": rng.choice(vocab.SHIPPING_METHODS),
        "subtotal": money.money(subtotal),
        "shipping": money.money(shipping),
        "total": money.money(subtotal + shipping),
        "approved_by": values.person_name(rng),
    }
    return buyer, vendor, items, fields


def _order_meta(rng: random.Random, fields: dict[str, str]) -> tuple:
    if rng.random() < 0.5:
        extra = (rng.choice(("Terms", "Payment Terms")), fields["payment_terms"])
    else:
        extra = ("Ship Via", fields["shipping_method"])
    main = b.Pairs(
        (
            (rng.choice(("PO Number", "P.O. No.", "Order No.")), fields["po_number"]),
            (rng.choice(("Order Date", "Date", "Issued")), fields["order_date"]),
            (rng.choice(("Delivery Date", "Deliver By", "Required By")), fields["delivery_date"]),
        )
    )
    return main, b.Extra((b.Pairs((extra,)),))


def build_purchase_order(rng: random.Random) -> b.DocSpec:
    """Build a random purchase order.

    Args:
        rng: Random source.

    Returns:
        The document spec.
    """
    style = random_style(rng)
    money, date_fmt = rng.choice(values.CURRENCIES), rng.choice(values.DATE_FORMATS)
    buyer, vendor, items, fields = _order_values(rng, money, date_fmt)
    contexts: dict[str, str] = {}
    parts.item_fields(items, money, fields, contexts)
    title = rng.choice(("PURCHASE ORDER", "Purchase Order"))
    heading = rng.choice(("Vendor", "Supplier", "To"))
    vendor_block = parts.address_block(heading, vendor, with_street=rng.random() < 0.5)
    totals = [
        ("Subtotal", fields["subtotal"]),
        ("Shipping", fields["shipping"]),
        (rng.choice(("Total", "Order Total", "Grand Total")), fields["total"]),
    ]
    body = [
        *parts.letterhead(rng, style, buyer, title),
        b.Columns(vendor_block, _order_meta(rng, fields), split=0.42),
        b.Gap(0.2),
        parts.items_table(rng, items, money),
        _totals(rng, totals, ()),
    ]
    if rng.random() < 0.7:
        caption = rng.choice(("Approved by", "Authorized Signature", "Buyer"))
        body.append(b.Extra((b.Signature(fields["approved_by"], caption),)))
    return b.DocSpec(style, body, fields, contexts)
