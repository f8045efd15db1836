"""Question templates and selection of unambiguous question/answer pairs."""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from doctune.synth.document import Document

# Generic templates per field; ``{ctx}`` is the row or label a field belongs to.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "seller_name": (
        "Which company issued this invoice?",
        "Who is the invoice from?",
        "What is the name of the company that sent the invoice?",
    ),
    "seller_phone": (
        "What is the phone number of the company issuing the invoice?",
        "Which phone number is listed for the seller?",
    ),
    "seller_email": (
        "What email address is given for the seller?",
        "What is the seller's email address?",
    ),
    "invoice_number": (
        "What is the invoice number?",
        "Which invoice number is shown?",
        "What is the number of this invoice?",
    ),
    "invoice_date": (
        "What is the invoice date?",
        "When was the invoice issued?",
        "On what date was this invoice issued?",
    ),
    "due_date": (
        "When is the payment due?",
        "What is the due date?",
        "By what date must the invoice be paid?",
    ),
    "customer_name": (
        "Who is the invoice billed to?",
        "What is the name of the customer?",
        "To whom is this invoice addressed?",
    ),
    "payment_terms": ("What are the payment terms?", "Which payment terms apply?"),
    "subtotal": (
        "What is the subtotal?",
        "What is the subtotal amount?",
        "What is the amount before tax?",
    ),
    "tax": ("What is the tax amount?", "How much tax is charged?"),
    "total": ("What is the total amount due?", "What is the total?", "How much is the total?"),
    "item_quantity": ("What is the quantity of {ctx}?", "How many units of {ctx} are listed?"),
    "item_unit_price": (
        "What is the unit price of {ctx}?",
        "How much does one unit of {ctx} cost?",
    ),
    "item_amount": ("What is the amount for {ctx}?", "What is the line total for {ctx}?"),
    "buyer_name": ("Which company issued this purchase order?", "Who is the buyer?"),
    "vendor_name": (
        "Who is the vendor?",
        "Which supplier is the order placed with?",
        "What is the name of the vendor?",
    ),
    "po_number": (
        "What is the PO number?",
        "What is the purchase order number?",
        "Which order number is shown?",
    ),
    "order_date": ("What is the order date?", "When was the order placed?"),
    "delivery_date": ("When should the goods be delivered?", "What is the delivery date?"),
    "shipping_method": ("How will the order be shipped?", "What is the shipping method?"),
    "shipping": ("What is the shipping cost?", "How much is charged for shipping?"),
    "approved_by": (
        "Who approved the purchase order?",
        "Whose name appears on the signature line?",
    ),
    "store_name": ("What is the name of the store?", "Which store issued this receipt?"),
    "store_phone": (
        "What is the store's phone number?",
        "Which phone number is printed on the receipt?",
    ),
    "date": ("What is the date on the receipt?", "On what date was the purchase made?"),
    "time": ("At what time was the purchase made?", "What time is printed on the receipt?"),
    "receipt_number": ("What is the receipt number?", "Which transaction number is shown?"),
    "cashier": ("Who was the cashier?", "What is the cashier's name?"),
    "card_last_digits": (
        "What are the last four digits of the card?",
        "Which card digits are shown on the receipt?",
    ),
    "payment_method": ("Which card type was used for payment?", "What card was used to pay?"),
    "cash_tendered": ("How much cash was given?", "What amount of cash was tendered?"),
    "change": ("How much change was given?", "What is the change amount?"),
    "full_name": (
        "What is the applicant's full name?",
        "Whose name is written on the form?",
        "What name is entered on the form?",
    ),
    "date_of_birth": ("What is the date of birth?", "When was the applicant born?"),
    "phone": ("What phone number is given on the form?", "What is the applicant's phone number?"),
    "email": ("What email address is entered?", "What is the applicant's email address?"),
    "address": ("What is the street address on the form?", "What address is written on the form?"),
    "city": ("What city and ZIP code are entered?", "What is written in the City / ZIP field?"),
    "id_number": ("What is the {ctx}?", "Which {ctx} is entered on the form?"),
    "extra": ("What is entered in the {ctx} field?", "What {ctx} is given on the form?"),
    "start_date": ("What is the start date?", "What start date is entered on the form?"),
    "emergency_contact": (
        "Who is the emergency contact?",
        "What is the name of the emergency contact?",
    ),
    "organization": (
        "Which organization is this form from?",
        "What organization name is printed at the top?",
    ),
    "form_title": ("What is the title of the form?", "What kind of form is this?"),
    "choice": ("Which {ctx} option is checked?", "What is selected for {ctx}?"),
    "bank_name": ("Which bank issued this statement?", "What is the name of the bank?"),
    "account_holder": ("Who is the account holder?", "Whose account is this statement for?"),
    "account_number": ("What is the account number?", "Which account number is shown?"),
    "period_start": (
        "When does the statement period start?",
        "What is the first day of the statement period?",
    ),
    "period_end": (
        "When does the statement period end?",
        "What is the last day of the statement period?",
    ),
    "opening_balance": (
        "What is the opening balance?",
        "What was the balance at the start of the period?",
    ),
    "closing_balance": (
        "What is the closing balance?",
        "What was the balance at the end of the period?",
    ),
    "total_deposits": ("What is the total of deposits?", "How much was deposited in total?"),
    "total_withdrawals": ("What is the total of withdrawals?", "How much was withdrawn in total?"),
    "txn_amount": (
        "What is the amount of the {ctx} transaction?",
        "How much was the {ctx} transaction?",
    ),
    "txn_balance": (
        "What was the balance after the {ctx} transaction?",
        "What balance is shown on the {ctx} line?",
    ),
}

# Per-kind wording where the generic template names the wrong document.
KIND_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("receipt", "total"): ("What is the total on the receipt?", "How much was paid in total?"),
    ("receipt", "item_amount"): ("How much did {ctx} cost?", "What is the price of {ctx}?"),
    ("purchase_order", "total"): (
        "What is the order total?",
        "What is the total of the purchase order?",
    ),
    ("purchase_order", "payment_terms"): ("What are the payment terms of the order?",),
    ("purchase_order", "subtotal"): ("What is the subtotal of the order?", "What is the subtotal?"),
}

_ROW_FIELD = re.compile(r"^(item|txn)_\d+_(\w+)$")
MIN_QA, MAX_QA = 3, 8
# Row-level questions are plentiful, so they are capped to keep variety.
MAX_ROW_QA = 3


def generic_field(key: str) -> str:
    """Map a field key such as ``item_2_amount`` to its template key ``item_amount``.

    Args:
        key: Field key.

    Returns:
        The template key.
    """
    match = _ROW_FIELD.match(key)
    return f"{match.group(1)}_{match.group(2)}" if match else key


def count_runs(words: list[str], answer: str) -> int:
    """Count where ``answer`` occurs as a contiguous run of whole words.

    Args:
        words: Page words in reading order.
        answer: Answer text (single-spaced).

    Returns:
        Number of occurrences.
    """
    tokens = answer.split(" ")
    size = len(tokens)
    return sum(words[i : i + size] == tokens for i in range(len(words) - size + 1))


def templates_for(kind: str, key: str) -> tuple[str, ...]:
    """Return question templates for a field of a document kind.

    Args:
        kind: Document kind.
        key: Field key.

    Returns:
        Templates (possibly empty when the field is never asked about).
    """
    generic = generic_field(key)
    return KIND_TEMPLATES.get((kind, generic), TEMPLATES.get(generic, ()))


def usable_fields(kind: str, fields: dict[str, str], words: list[str]) -> list[str]:
    """Return the fields a question can be asked about: templated, answer on the page once.

    Args:
        kind: Document kind.
        fields: Field key -> displayed value.
        words: Rendered words in reading order.

    Returns:
        Field keys, in ``fields`` order.
    """
    return [k for k in fields if templates_for(kind, k) and count_runs(words, fields[k]) == 1]


def row_qa(doc: Document, rng: random.Random) -> list[tuple[str, str]]:
    """Ask about every usable row field (line items, transactions) of a document, uncapped.

    ``make_qa`` keeps at most ``MAX_ROW_QA`` row questions per page for variety; a reader that
    must learn to find a cell by its row name and column is better taught on all of them.

    Args:
        doc: A rendered document.
        rng: Random source (template wording).

    Returns:
        ``(question, answer)`` pairs, in ``doc.fields`` order.
    """
    return [
        (rng.choice(templates_for(doc.kind, k)).format(ctx=doc.contexts[k]), doc.fields[k])
        for k in usable_fields(doc.kind, doc.fields, doc.words)
        if _ROW_FIELD.match(k) and doc.contexts.get(k)
    ]


def make_qa(
    kind: str,
    fields: dict[str, str],
    contexts: dict[str, str],
    words: list[str],
    rng: random.Random,
) -> list[tuple[str, str]]:
    """Pick 3-8 question/answer pairs whose answers occur exactly once on the page.

    Args:
        kind: Document kind.
        fields: Field key -> displayed value.
        contexts: Field key -> row/label name used in templates.
        words: Rendered words in reading order.
        rng: Random source.

    Returns:
        ``(question, answer)`` pairs.

    Raises:
        ValueError: If fewer than three fields can be asked about.
    """
    usable = usable_fields(kind, fields, words)
    if len(usable) < MIN_QA:
        raise ValueError(f"{kind}: only {len(usable)} unambiguous fields: {usable}")
    rng.shuffle(usable)
    rows = [k for k in usable if _ROW_FIELD.match(k)][:MAX_ROW_QA]
    chosen = [k for k in usable if not _ROW_FIELD.match(k) or k in rows]
    chosen = chosen[: rng.randint(MIN_QA, MAX_QA)]
    return [
        (rng.choice(templates_for(kind, k)).format(ctx=contexts.get(k, "")), fields[k])
        for k in chosen
    ]
