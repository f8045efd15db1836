"""Form and bank-statement builders."""

from __future__ import annotations

import datetime as dt
import random

from doctune.synth import blocks as b
from doctune.synth import parts, values, vocab
from doctune.synth.style import random_style

# (title, id label, choice label, choice options, extra field label, extra values)
FORM_TYPES: tuple[tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    (
        "Employee Information Form",
        "Employee ID",
        "Employment Type",
        ("Full-time", "Part-time", "Contract"),
        "Department",
        vocab.DEPARTMENTS,
    ),
    (
        "Patient Registration Form",
        "Patient ID",
        "Preferred Contact",
        ("Phone", "Email", "Mail"),
        "Occupation",
        vocab.JOB_TITLES,
    ),
    (
        "Membership Application",
        "Member ID",
        "Plan",
        ("Basic", "Standard", "Premium"),
        "Occupation",
        vocab.JOB_TITLES,
    ),
    (
        "New Hire Form",
        "Staff No.",
        "Shift",
        ("Day", "Evening", "Night"),
        "Position",
        vocab.JOB_TITLES,
    ),
)


def _form_fields(rng: random.Random, form_type: tuple, date_fmt: str) -> dict[str, str]:
    """Return the values filled into a form, keyed by field name."""
    applicant = parts.person(rng, rng.randrange(4))
    born = values.random_date(rng, 1950, 2004)
    return {
        "full_name": applicant.name,
        "date_of_birth": values.format_date(born, date_fmt),
        "phone": applicant.phone,
        "email": applicant.email,
        "address": applicant.street,
        "city": applicant.city,
        "id_number": values.digits(rng, rng.choice((5, 6, 7))),
        "extra": rng.choice(form_type[5]),
        "start_date": values.format_date(values.random_date(rng, 2019, 2025), date_fmt),
        "emergency_contact": values.person_name(rng),
    }


def _form_rows(rng: random.Random, form_type: tuple, f: dict[str, str], boxed: bool) -> tuple:
    """Arrange form cells in rows; short fields share a row."""
    dob = rng.choice(("Date of Birth", "DOB", "Birth Date"))
    rows = [
        (("Full Name", f["full_name"]),),
        ((dob, f["date_of_birth"]), ("Phone", f["phone"])),
        (("Email", f["email"]),),
        (("Address", f["address"]),),
        (("City / ZIP", f["city"]),),
        ((form_type[1], f["id_number"]), (form_type[4], f["extra"])),
        (("Start Date", f["start_date"]), ("Emergency Contact", f["emergency_contact"])),
    ]
    if boxed:
        # Boxed fields take twice the height, so keep fewer of them.
        rows = [rows[0], rows[1], rows[2], rows[rng.choice((3, 4))], rows[5]]
    return tuple(rows)


def _form_heading(rng: random.Random, org: str, title: str) -> list:
    align = rng.choice(("left", "center"))
    note = rng.choice(("Please print clearly.", "All fields are required.", "Personal Information"))
    return [
        b.Text(org, rel=1.15, bold=True, align=align, color="accent", head=True),
        b.Text(title, rel=1.2, bold=True, align=align, head=True),
        b.Rule(),
        b.Extra((b.Text(note, rel=0.9, italic=True, color="muted"),)),
    ]


def build_form(rng: random.Random) -> b.DocSpec:
    """Build a random filled-in form.

    Args:
        rng: Random source.

    Returns:
        The document spec.
    """
    style = random_style(rng)
    form_type = rng.choice(FORM_TYPES)
    fields = _form_fields(rng, form_type, rng.choice(values.DATE_FORMATS))
    boxed = rng.random() < 0.5
    rows = _form_rows(rng, form_type, fields, boxed)
    selected = rng.randrange(len(form_type[3]))
    fields.update(organization=values.company_name(rng), form_title=form_type[0])
    fields["choice"] = form_type[3][selected]
    body = [
        *_form_heading(rng, fields["organization"], form_type[0]),
        b.Fields(rows, boxed=boxed),
        b.Checks(form_type[2], form_type[3], selected),
    ]
    if not boxed or rng.random() < 0.5:
        signature = b.Signature(fields["full_name"], "Signature")
        body.append(b.Extra((b.Columns((signature,), ()),)))
    contexts = {"choice": form_type[2], "id_number": form_type[1], "extra": form_type[4]}
    return b.DocSpec(style, body, fields, contexts)


def _transactions(
    rng: random.Random, start: dt.date, opening: int
) -> list[tuple[dt.date, str, int, int]]:
    """Return ``(date, description, amount, balance)`` rows in date order."""
    count = rng.randint(4, 6)
    names = rng.sample(vocab.TRANSACTIONS_OUT, count - 1) + rng.sample(vocab.TRANSACTIONS_IN, 1)
    rng.shuffle(names)
    days = sorted(rng.sample(range(0, 28), count))
    rows, balance = [], opening
    for day, name in zip(days, names, strict=True):
        if name in vocab.TRANSACTIONS_IN:
            amount = rng.randint(20000, 350000)
        else:
            amount = -rng.randint(300, min(160000, max(balance // 3, 2000)))
        balance += amount
        rows.append((start + dt.timedelta(days=day), name, amount, balance))
    return rows


def _statement_fields(
    rng: random.Random, money: values.Currency, date_fmt: str
) -> tuple[dict, list]:
    start = values.random_date(rng).replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    opening = rng.randint(50000, 900000)
    txns = _transactions(rng, start, opening)
    fields = {
        "account_number": rng.choice(
            (values.digits(rng, 10), f"{values.digits(rng, 4)}-{values.digits(rng, 6)}")
        ),
        "period_start": values.format_date(start, date_fmt),
        "period_end": values.format_date(end, date_fmt),
        "opening_balance": money.money(opening),
        "closing_balance": money.money(txns[-1][3]),
        "total_deposits": money.money(sum(t[2] for t in txns if t[2] > 0)),
        "total_withdrawals": money.money(-sum(t[2] for t in txns if t[2] < 0)),
    }
    return fields, txns


def _txn_table(
    rng: random.Random, txns: list, money: values.Currency, fields: dict, contexts: dict
) -> b.Table:
    """Return the transaction table, recording per-row amount/balance fields."""
    short = rng.choice(("md", "dm", "d_mon"))
    with_balance = rng.random() < 0.6
    rows = []
    for index, (day, name, amount, balance) in enumerate(txns, 1):
        row = (values.short_date(day, short), name, money.number(amount), money.number(balance))
        rows.append(row if with_balance else row[:3])
        fields[f"txn_{index}_amount"] = row[2]
        contexts[f"txn_{index}_amount"] = name
        if with_balance:  # otherwise the value could only match the closing balance
            fields[f"txn_{index}_balance"] = row[3]
            contexts[f"txn_{index}_balance"] = name
    header = ("Date", rng.choice(("Description", "Details", "Transaction")), "Amount", "Balance")
    numeric = (False, False, True, True)
    width = 4 if with_balance else 3
    return b.Table(header[:width], tuple(rows), numeric[:width])


def _statement_heading(rng: random.Random, style, bank: str) -> list:
    align = style.header_align
    address = f"{values.street_address(rng)}, {values.city_line(rng).split(',')[0]}"
    title = rng.choice(("Account Statement", "Statement of Account", "Monthly Statement"))
    return [
        *([b.Extra((b.Logo(align),))] if style.logo else []),
        b.Text(bank, rel=1.3, bold=True, align=align, color="accent", head=True),
        b.Extra((b.Text(address, align=align, rel=0.9),)),
        b.Text(title, rel=1.3, bold=True, align=align, head=True),
        b.Rule(thick=2),
    ]


def _statement_summary(rng: random.Random, fields: dict[str, str]) -> b.Columns:
    summary = b.Pairs(
        (
            (rng.choice(("Opening Balance", "Previous Balance")), fields["opening_balance"]),
            (rng.choice(("Deposits", "Total Credits")), fields["total_deposits"]),
            (rng.choice(("Withdrawals", "Total Debits")), fields["total_withdrawals"]),
            (rng.choice(("Closing Balance", "New Balance")), fields["closing_balance"]),
        ),
        mode="columns",
        align="right",
        bold_last=True,
    )
    return b.Columns((), (summary,), split=rng.choice((0.0, 0.3)))


def build_bank_statement(rng: random.Random) -> b.DocSpec:
    """Build a random bank account statement.

    Args:
        rng: Random source.

    Returns:
        The document spec.
    """
    style = random_style(rng)
    money = rng.choice(values.CURRENCIES)
    # Long month names would make the statement period too wide for one row.
    date_fmt = rng.choice([f for f in values.DATE_FORMATS if f != "long"])
    bank = f"{rng.choice(vocab.BANK_WORDS)} {rng.choice(vocab.BANK_SUFFIXES)}"
    holder = parts.person(rng, rng.randrange(4))
    fields, txns = _statement_fields(rng, money, date_fmt)
    fields.update(bank_name=bank, account_holder=holder.name)
    contexts: dict[str, str] = {}
    table = _txn_table(rng, txns, money, fields, contexts)
    number_label = rng.choice(("Account No.", "Account Number", "Account"))
    period = f"{fields['period_start']} - {fields['period_end']}"
    account = b.Pairs(((number_label, fields["account_number"]), ("Period", period)), "stacked")
    body = [
        *_statement_heading(rng, style, bank),
        b.Columns(parts.address_block("Account Holder", holder), (account,), split=0.5),
        _statement_summary(rng, fields),
        b.Gap(0.2),
        table,
    ]
    return b.DocSpec(style, body, fields, contexts)
