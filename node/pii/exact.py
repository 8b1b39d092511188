"""The exact detectors: e-mail addresses, IBANs, IP addresses, and the numbers (SSNs, cards, phone numbers).

Untrusted text is only ever matched by RE2 (``google-re2``), whose matching time is linear in the input: no
pattern here can backtrack, so no input can make one slow (main's IPv6 regex took cubic time on a run of
colons, and 3,000 of them froze a node for over 30 s). The patterns only find maximal candidate runs; the
decisions are code on short candidates: python-stdnum's Luhn and mod-97 checks, the ``ipaddress`` module,
and Google's libphonenumber (``phonenumbers``) for phone numbers, each called a bounded number of times.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import phonenumbers
import re2
from stdnum import iban, luhn

PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "CN")
"""Where numbers written without ``+country`` are read as national numbers, in this order. A number with a
``+`` prefix is read in any country. Each region costs a matcher run per candidate and lets more ordinary
digit runs pass as phone numbers (a bare 10-digit number such as 4155550132 is a valid US number), so the
list is short and deliberate: NANP (US and Canada), the largest European numbering plans, and China (11-digit
mobiles such as 13812345678). Pass ``phone_regions`` to :class:`~guildnet.node.pii.Scrubber` to change it."""

VALIDATIONS = 512
"""IBAN checks and phone-number matcher runs (one per region) per string. Real text needs a handful; past
this many (only a hostile input has them), each remaining candidate is scrubbed without being validated:
more is scrubbed, and the work stays bounded (tens of milliseconds of matcher runs at most)."""

_LETTER = r"\p{L}\p{M}\p{N}"
_EMAIL = re2.compile(rf"[{_LETTER}._%+\-]+@[{_LETTER}\-]+(?:\.[{_LETTER}\-]+)+")
_IBAN_MAX = 34
_IBAN = re2.compile(r"[A-Za-z]{2}[0-9]{2}(?:[ \-]?[A-Za-z0-9]){11,30}")
_IBAN_START = re2.compile(r"[A-Za-z]{2}[0-9]{2}")
_IPV4 = re2.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6 = re2.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_NUMBER = re2.compile(r"\+?\(?[0-9]+(?:[ .\-/_()]{1,3}[0-9]+)*")
"""A run of digit groups joined by short separators: every SSN, card and phone number is a window of one."""
_GROUP = re2.compile(r"[0-9]+")
_UNSPACED = re2.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


@dataclass(frozen=True, slots=True)
class Hit:
    start: int
    end: int
    kind: str
    """``EMAIL``, ``PHONE``, ...; ``""`` claims a span that is not PII so no later detector reads it again."""
    normalised: str
    """The value the keyed hash is taken of: one person, one token, however the value was written."""


class Budget:
    """Checksum and phone-number validations left for one string (see :data:`VALIDATIONS`)."""

    def __init__(self) -> None:
        self.left = VALIDATIONS

    def spend(self) -> bool:
        """``False`` once the budget is spent: the caller then scrubs the candidate without validating it."""
        self.left -= 1
        return self.left >= 0


def _word_at(text: str, index: int) -> bool:
    """Whether ``text[index]`` is a letter, digit or underscore (a match next to one is part of a word).
    Han, kana and Hangul are not: Chinese, Japanese and Korean write numbers against words (卡号5112...)."""
    if not 0 <= index < len(text):
        return False
    char = text[index]
    return (char.isalnum() or char == "_") and _UNSPACED.fullmatch(char) is None


def emails(text: str) -> Iterator[Hit]:
    for m in _EMAIL.finditer(text):
        top = m.group().rsplit(".", 1)[1]
        if len(top) >= 2 and top.isalpha():
            yield Hit(m.start(), m.end(), "EMAIL", m.group().lower())


def ibans(text: str, budget: Budget) -> Iterator[Hit]:
    """Any case, spaces or hyphens between characters. Every word that starts like an IBAN (two letters, two
    digits) is a candidate; the candidate may run into the next words, so the longest valid prefix ending at
    a separator wins."""
    after = 0
    for m in _IBAN_START.finditer(text):
        if m.start() >= after:
            hit = _iban_at(text, m.start(), budget)
            if hit is not None:
                after = hit.end
                yield hit


def _iban_at(text: str, start: int, budget: Budget) -> Hit | None:
    if _word_at(text, start - 1):
        return None
    m = _IBAN.match(text[start:start + 2 * _IBAN_MAX])
    if m is None:
        return None
    candidate = m.group().upper()
    ends = [len(candidate)] + [i for i in range(len(candidate) - 1, 14, -1) if candidate[i] in " -"]
    for end in ends:
        if _word_at(text, start + end):
            continue
        if not budget.spend():
            return Hit(start, start + end, "IBAN", iban.compact(candidate[:end]))
        if iban.is_valid(candidate[:end]):
            return Hit(start, start + end, "IBAN", iban.compact(candidate[:end]))
    return None


def ip_addresses(text: str) -> Iterator[Hit]:
    for m in _IPV4.finditer(text):
        before, after = text[max(0, m.start() - 2):m.start()], text[m.end():m.end() + 2]
        if _word_at(text, m.start() - 1) or _word_at(text, m.end()) or (before[-1:] == "." and before[:1].isdigit()) \
                or (after[:1] == "." and after[1:].isdigit()):
            continue
        try:
            yield Hit(m.start(), m.end(), "IP", str(ipaddress.IPv4Address(m.group())))
        except ValueError:
            continue
    for m in _IPV6.finditer(text):
        if len(m.group()) > 45 or _word_at(text, m.start() - 1) or _word_at(text, m.end()):
            continue  # an address is at most 45 characters; a longer run is not one, whatever it holds
        try:
            yield Hit(m.start(), m.end(), "IP", ipaddress.IPv6Address(m.group()).compressed)
        except ValueError:
            continue


@dataclass(frozen=True, slots=True)
class _Group:
    start: int
    end: int
    digits: str


def _phone(candidate: str, regions: Sequence[str], budget: Budget) -> str | None:
    """The E.164 form of ``candidate`` if all of it is one valid number, international or national in a region.

    libphonenumber's matcher at ``VALID`` leniency, run on the candidate alone (at most 15 digits and 6
    groups, so its own backtracking patterns see a few dozen characters): besides the numbering plans, it
    refuses dates and times and a national number written without the trunk prefix its country requires."""
    for region in ("US",) if candidate.startswith("+") else regions:
        if not budget.spend():
            return "".join(c for c in candidate if c.isdigit() or c == "+")
        match = next(iter(phonenumbers.PhoneNumberMatcher(candidate, region, leniency=phonenumbers.Leniency.VALID)),
                     None)
        if match is not None and (match.start, match.end) == (0, len(candidate)):
            return phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _ssn(groups: Sequence[_Group], text: str) -> bool:
    """123-45-6789 or 123 45 6789 (one separator, used twice); never 000, 666 or 9xx, 00 or 0000."""
    if [len(g.digits) for g in groups] != [3, 2, 4]:
        return False
    separators = {text[groups[0].end:groups[1].start], text[groups[1].end:groups[2].start]}
    area, group, serial = (g.digits for g in groups)
    return separators in ({"-"}, {" "}) and area not in ("000", "666") and area[0] != "9" \
        and group != "00" and serial != "0000"


def numbers(text: str, regions: Sequence[str], budget: Budget) -> Iterator[Hit]:
    """SSNs, payment cards and phone numbers, from runs of digit groups.

    From each group of a run onwards: an SSN (three groups), then the longest Luhn-valid card (13-19 digits
    in groups of 3 or more, any separator), then the longest valid phone number (7-15 digits in at most 6
    groups). Each group starts a bounded number of windows, so the work is linear in the run."""
    for run in _NUMBER.finditer(text):
        if _word_at(text, run.start() - 1) or _word_at(text, run.end()):
            continue  # part of a word: an order reference like A7048 or a hex id
        groups = [_Group(run.start() + g.start(), run.start() + g.end(), g.group())
                  for g in _GROUP.finditer(run.group())]
        prefix = run.group()[:groups[0].start - run.start()]
        i = 0
        while i < len(groups):
            hit = _number_at(text, groups, i, prefix if i == 0 else "", regions, budget)
            if hit is None:
                i += 1
                continue
            yield hit[0]
            i = hit[1]


def _number_at(text: str, groups: Sequence[_Group], i: int, prefix: str, regions: Sequence[str],
               budget: Budget) -> tuple[Hit, int] | None:
    """The hit starting at group ``i`` and the index of the group after it, or ``None``."""
    start = groups[i].start - len(prefix)
    if _ssn(groups[i:i + 3], text):
        return Hit(start, groups[i + 2].end, "SSN", "".join(g.digits for g in groups[i:i + 3])), i + 3
    card = ""
    cards: list[tuple[int, str]] = []  # (index after the window, its digits)
    for j in range(i, len(groups)):
        if len(groups[j].digits) < 3 or len(card) + len(groups[j].digits) > 19:
            break
        card += groups[j].digits
        cards.append((j + 1, card))
    for after, number in reversed(cards):
        if len(number) >= 13 and luhn.is_valid(number):
            return Hit(start, groups[after - 1].end, "CARD", number), after
    if len(groups[i].digits) >= 13:  # an unseparated long number that is no card: an id, never a phone number
        return Hit(start, groups[i].end, "", groups[i].digits), i + 1
    phone = ""
    phones: list[tuple[int, str]] = []
    for j in range(i, min(i + 6, len(groups))):
        phone += groups[j].digits
        if len(phone) > 15:
            break
        phones.append((j + 1, phone))
    for after, number in reversed(phones):
        if len(number) >= 7:
            e164 = _phone(prefix + text[groups[i].start:groups[after - 1].end], regions, budget)
            if e164 is not None:
                return Hit(start, groups[after - 1].end, "PHONE", e164), after
    return None


def exact_hits(text: str, regions: Sequence[str] = PHONE_REGIONS) -> list[Hit]:
    """Every candidate, in priority order: where two overlap, the earlier kind wins."""
    budget = Budget()
    return [*emails(text), *ibans(text, budget), *ip_addresses(text), *numbers(text, regions, budget)]
