"""PII scrubbing for process data: applied inside the write path so raw PII never reaches a database.

Detected offline, in time linear in the input (:mod:`.exact`: RE2 patterns, checks in code): e-mail addresses
(internationalised too), phone numbers (Google's libphonenumber), payment card numbers (Luhn-valid ones, any
separator), IBANs (mod-97-valid ones, any case and spacing), IPv4/IPv6 addresses and US social security
numbers; all after Unicode NFKC normalisation (:mod:`.normalise`), so full-width or non-ASCII digits hide
nothing. Person names need NER models, the ``pii`` extra (:mod:`.names`); without them names are not
detected and :attr:`Scrubber.detects_names` says so, so nobody assumes more protection than there is.
Every string is cut at a size cap, and each JSON value has a budget, so no input costs unbounded time.

Two modes: ``redact`` replaces a value by its type (``<EMAIL>``); ``hash`` replaces it by the type and an
HMAC-SHA256 of the normalised value under a configured key (``<EMAIL:ab12cd34>``), so the same customer can be
followed across records without storing who it is. docs/privacy.md has what is caught, what is missed, and
the figures.
"""

from .exact import PHONE_REGIONS
from .names import SPACY_MODELS, NameDetector, Span, spacy_name_detector
from .scrubber import MAX_FIELD_CHARS, MAX_VALUE_CHARS, Mode, NameDetectionUnavailable, NamesSetting, Scrubber

__all__ = ["MAX_FIELD_CHARS", "MAX_VALUE_CHARS", "PHONE_REGIONS", "SPACY_MODELS", "Mode", "NameDetectionUnavailable",
           "NameDetector", "NamesSetting", "Scrubber", "Span", "spacy_name_detector"]
