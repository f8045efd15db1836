"""Random value generators (names, addresses, dates, amounts, identifiers).

Every function takes an explicit ``random.Random`` so documents are fully
determined by their seed; no global random state is touched.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass

from doctune.synth import vocab

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# strftime is locale dependent, so dates are formatted by hand.
DATE_FORMATS: tuple[str, ...] = ("mdy_slash", "dmy_slash", "iso", "long", "short", "dmy_dot")


def person_name(rng: random.Random, initial: bool = False) -> str:
    """Return a random "First Last" name, optionally with a middle initial.

    Args:
        rng: Random source.
        initial: Whether to add a middle initial such as ``"J."``.

    Returns:
        The name as a single-spaced string.
    """
    first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.SURNAMES)
    if initial:
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
    return f"{first} {last}"


def company_name(rng: random.Random) -> str:
    """Return a random company name such as ``"Harbor Logistics LLC"``.

    Args:
        rng: Random source.

    Returns:
        The company name.
    """
    pattern = rng.random()
    if pattern < 0.55:
        return f"{rng.choice(vocab.COMPANY_WORDS)} {rng.choice(vocab.COMPANY_TRADES)}"
    if pattern < 0.85:
        suffix = rng.choice(vocab.COMPANY_SUFFIXES)
        return f"{rng.choice(vocab.COMPANY_WORDS)} {suffix}"
    first, second = rng.sample(vocab.SURNAMES, 2)
    return f"{first} & {second}"


def domain_for(name: str) -> str:
    """Derive a plausible web domain from a company or bank name.

    Args:
        name: Organisation name.

    Returns:
        A lowercase domain such as ``"harborlogistics.com"``.
    """
    stem = re.sub(r"[^a-z]", "", name.lower().replace("&", "and"))
    return f"{stem[:18]}.com"


def street_address(rng: random.Random) -> str:
    """Return a street line such as ``"482 Maple Avenue"``.

    Args:
        rng: Random source.

    Returns:
        The street address line.
    """
    return (
        f"{rng.randint(1, 9899)} {rng.choice(vocab.STREET_NAMES)} {rng.choice(vocab.STREET_TYPES)}"
    )


def city_line(rng: random.Random) -> str:
    """Return a city line such as ``"Austin, TX 78701"``.

    Args:
        rng: Random source.

    Returns:
        City, region code and postal code.
    """
    city, region = rng.choice(vocab.CITIES)
    return f"{city}, {region} {rng.randint(10000, 99899):05d}"


def phone(rng: random.Random, style: int) -> str:
    """Return a phone number in one of four notations.

    Args:
        rng: Random source.
        style: Notation index 0-3 (kept fixed within a document).

    Returns:
        The formatted phone number.
    """
    area, mid, end = rng.randint(201, 989), rng.randint(200, 989), rng.randint(0, 9999)
    formats = (
        f"({area}) {mid}-{end:04d}",
        f"{area}-{mid}-{end:04d}",
        f"+1 {area} {mid} {end:04d}",
        f"{area}.{mid}.{end:04d}",
    )
    return formats[style % len(formats)]


def email(rng: random.Random, person: str, domain: str | None = None) -> str:
    """Return an email address derived from a person's name.

    Args:
        rng: Random source.
        person: Name whose first and last words form the local part.
        domain: Domain to use; a free-mail domain is picked when None.

    Returns:
        The lowercase email address.
    """
    parts = re.sub(r"[^a-z ]", "", person.lower()).split()
    first, last = parts[0], parts[-1]
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}"))
    return f"{local}@{domain or rng.choice(vocab.EMAIL_DOMAINS)}"


def random_date(rng: random.Random, start_year: int = 2018, end_year: int = 2025) -> dt.date:
    """Return a uniformly random calendar date.

    Args:
        rng: Random source.
        start_year: First year (inclusive).
        end_year: Last year (inclusive).

    Returns:
        The date.
    """
    first = dt.date(start_year, 1, 1).toordinal()
    last = dt.date(end_year, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(first, last))


def format_date(day: dt.date, fmt: str) -> str:
    """Format a date in one of the ``DATE_FORMATS`` notations.

    Args:
        day: The date.
        fmt: A name from ``DATE_FORMATS``.

    Returns:
        The formatted date, e.g. ``"03/14/2024"`` or ``"March 14, 2024"``.

    Raises:
        ValueError: If ``fmt`` is unknown.
    """
    month = _MONTHS[day.month - 1]
    table = {
        "mdy_slash": f"{day.month:02d}/{day.day:02d}/{day.year}",
        "dmy_slash": f"{day.day:02d}/{day.month:02d}/{day.year}",
        "iso": day.isoformat(),
        "long": f"{month} {day.day}, {day.year}",
        "short": f"{day.day} {month[:3]} {day.year}",
        "dmy_dot": f"{day.day:02d}.{day.month:02d}.{day.year}",
    }
    if fmt not in table:
        raise ValueError(f"unknown date format {fmt!r}")
    return table[fmt]


def short_date(day: dt.date, fmt: str) -> str:
    """Format a date without its year, as in statement tables.

    Args:
        day: The date.
        fmt: ``"md"`` (``03/14``), ``"dm"`` (``14/03``) or ``"d_mon"`` (``14 Mar``).

    Returns:
        The formatted date.

    Raises:
        ValueError: If ``fmt`` is unknown.
    """
    table = {
        "md": f"{day.month:02d}/{day.day:02d}",
        "dm": f"{day.day:02d}/{day.month:02d}",
        "d_mon": f"{day.day:02d} {_MONTHS[day.month - 1][:3]}",
    }
    if fmt not in table:
        raise ValueError(f"unknown short date format {fmt!r}")
    return table[fmt]


@dataclass(frozen=True)
class Currency:
    """How money is written on one document.

    Attributes:
        symbol: Currency sign or code.
        suffix: Whether the sign follows the number (``"12,50 €"``).
        european: Whether to use ``.`` for thousands and ``,`` for decimals.
    """

    symbol: str
    suffix: bool = False
    european: bool = False

    def number(self, cents: int) -> str:
        """Format an amount without the currency sign.

        Args:
            cents: Amount in hundredths; may be negative.

        Returns:
            The number such as ``"1,234.50"`` or ``"1.234,50"``.
        """
        text = f"{abs(cents) / 100:,.2f}"
        if self.european:
            text = text.replace(",", "_").replace(".", ",").replace("_", ".")
        return f"-{text}" if cents < 0 else text

    def money(self, cents: int) -> str:
        """Format an amount with the currency sign.

        Args:
            cents: Amount in hundredths; may be negative.

        Returns:
            The amount such as ``"$1,234.50"`` or ``"1.234,50 €"``.
        """
        number = self.number(cents)
        if self.suffix:
            return f"{number} {self.symbol}"
        sep = " " if len(self.symbol) > 1 else ""
        return f"{self.symbol}{sep}{number}"


CURRENCIES: tuple[Currency, ...] = (
    Currency("$"),
    Currency("$"),
    Currency("$"),
    Currency("£"),
    Currency("€", suffix=True, european=True),
    Currency("USD"),
)


def reference(rng: random.Random, prefixes: tuple[str, ...], year: int | None = None) -> str:
    """Return a document reference such as ``"INV-2024-0153"`` or ``"PO-48213"``.

    Args:
        rng: Random source.
        prefixes: Candidate prefixes; one is chosen.
        year: Optional year embedded in some patterns.

    Returns:
        The reference string (never containing spaces).
    """
    prefix = rng.choice(prefixes)
    pattern = rng.randrange(4)
    if prefix == "#":
        return f"#{rng.randint(1000, 999999)}"
    if pattern == 0 and year is not None:
        return f"{prefix}-{year}-{rng.randint(1, 9999):04d}"
    if pattern == 1:
        return f"{prefix}{rng.randint(10000, 999999)}"
    if pattern == 2:
        return f"{rng.randint(100000, 9999999)}"
    return f"{prefix}-{rng.randint(1000, 99999)}"


def digits(rng: random.Random, count: int) -> str:
    """Return a string of random decimal digits with a non-zero first digit.

    Args:
        rng: Random source.
        count: Number of digits, at least 1.

    Returns:
        The digit string.
    """
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(count - 1))
