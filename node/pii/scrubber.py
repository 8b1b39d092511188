"""The scrubber: every string of a JSON value, normalised, matched, cut to size, and its PII replaced."""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from .exact import PHONE_REGIONS, Hit, exact_hits
from .names import NAME_MODELS, CombinedNames, NameDetector, installed_name_models
from .normalise import normalise

Mode = Literal["redact", "hash"]
NamesSetting = Literal["auto", "on", "off"]

MAX_FIELD_CHARS = 8_192
"""Characters of one string that are scanned and stored; the rest is cut (see :meth:`Scrubber.scrub_text`).
Name models cost the most: about a second per 8,192 characters of hostile, token-dense text here."""

MAX_VALUE_CHARS = 32_768
"""Characters scanned in one JSON value (every string and key, plus 16 per string for its fixed costs);
strings past this are replaced by ``<OMITTED>`` unscanned (see :meth:`Scrubber.scrub`)."""

_LOOKAHEAD = 512
"""Characters past the cut that detectors still read, so a value that straddles the cut is recognised and
cut before, never half kept (the longest e-mail address is 320 characters)."""

_PER_STRING = 16


class NameDetectionUnavailable(RuntimeError):
    """Person-name detection was required but a name model of the ``pii`` extra is not installed."""


class Scrubber:
    """Replaces PII in strings and, recursively, in JSON values (dict keys included).

    ``names``: ``"auto"`` detects person names with whichever name models are installed, ``"on"`` requires
    all of them (the ``pii`` extra; :class:`NameDetectionUnavailable` otherwise), ``"off"`` never looks for
    names; or pass a :data:`NameDetector` callable returning ``(start, end)`` spans. ``phone_regions``: where
    numbers written without ``+country`` are read (:data:`~guildnet.node.pii.exact.PHONE_REGIONS`).
    """

    def __init__(self, mode: Mode = "redact", *, key: bytes | None = None,
                 names: NamesSetting | NameDetector = "auto", phone_regions: Sequence[str] = PHONE_REGIONS,
                 max_field_chars: int = MAX_FIELD_CHARS, max_value_chars: int = MAX_VALUE_CHARS) -> None:
        if mode not in ("redact", "hash"):
            raise ValueError(f"PII mode must be 'redact' or 'hash', not {mode!r}")
        if mode == "hash" and (key is None or len(key) < 16):
            raise ValueError("PII mode 'hash' needs a key of at least 16 bytes")
        self.mode: Mode = mode
        self._key = key or b""
        self.phone_regions = tuple(phone_regions)
        self.max_field_chars = max_field_chars
        self.max_value_chars = max_value_chars
        self.name_models: tuple[str, ...] = ()
        """The name models in use (``spacy``, ``rampart``, ``natasha``, ``jieba``), for ``guildnet doctor``."""
        self._names: NameDetector | None
        if names == "auto" or names == "on":
            installed = installed_name_models()
            missing = [model for model in NAME_MODELS if model not in installed]
            if names == "on" and missing:
                raise NameDetectionUnavailable(f"person-name detection needs the name models {missing}: "
                                               "pip install 'guildnet[pii]'")
            self.name_models = tuple(installed)
            self._names = CombinedNames(installed) if installed else None
        elif names == "off":
            self._names = None
        else:
            self._names = names

    def __repr__(self) -> str:
        return f"Scrubber(mode={self.mode!r}, detects_names={self.detects_names})"

    @property
    def detects_names(self) -> bool:
        return self._names is not None

    def warm_up(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Load the name models now instead of on the first text with a capital letter (blocking: call it off
        the event loop); ``stop`` is asked before each model."""
        if isinstance(self._names, CombinedNames):
            self._names.warm_up(stop)

    def _token(self, kind: str, normalised: str) -> str:
        if self.mode == "redact":
            return f"<{kind}>"
        digest = hmac.new(self._key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()[:8]
        return f"<{kind}:{digest}>"

    def scrub_text(self, text: str, *, names: bool = True) -> str:
        """The text with each PII value replaced by its token.

        Detectors read the NFKC form (:mod:`~guildnet.node.pii.normalise`); the rest of the text is kept as
        written. Text longer than ``max_field_chars`` is cut there (earlier if a detected value straddles the
        cut, so no part of it is kept) and ends with ``<TRUNCATED n>``, n being the characters dropped: they
        are never scanned nor stored. ``names=False`` for identifiers (skill ids, model names, trace ids):
        NER reads a hex trace id or a model called "Llama" as a person, and scrubbing those would break
        grouping, not protect anyone."""
        cut = length = len(text)
        if cut > self.max_field_chars:
            cut = self.max_field_chars
            text = text[:cut + _LOOKAHEAD]
        view = normalise(text)
        hits = exact_hits(view.text, self.phone_regions)
        if names and self._names is not None:
            hits += [Hit(s, e, "PERSON", " ".join(view.text[s:e].lower().split())) for s, e in self._names(view.text)]
        taken = _claims((*view.span(hit.start, hit.end), hit) for hit in hits)
        if cut < length:
            cut = min([cut] + [start for start, end, _ in taken if start < cut < end])
        out: list[str] = []
        cursor = 0
        for start, end, hit in taken:
            if not hit.kind or start >= cut:
                continue
            out.append(text[cursor:start])
            out.append(self._token(hit.kind, hit.normalised))
            cursor = end
        out.append(text[cursor:cut])
        if cut < length:
            out.append(f"<TRUNCATED {length - cut}>")
        return "".join(out)

    def scrub(self, value: Any) -> Any:
        """Scrub every string inside a JSON value; numbers are scrubbed too when they look like PII.

        At most ``max_value_chars`` are scanned per value: later strings become ``<OMITTED>``, so one
        request of many small strings costs no more than one of a few large ones."""
        return _Walk(self).value(value)


def _claims(hits: Iterable[tuple[int, int, Hit]]) -> list[tuple[int, int, Hit]]:
    """The hits that keep their span, in text order: in priority order, the first claim on a character wins.
    Sorted and bisected, so a hostile text with thousands of candidates costs n log n, not n squared."""
    taken: list[tuple[int, int, Hit]] = []
    starts: list[int] = []
    for start, end, hit in hits:
        i = bisect.bisect_left(starts, start)
        if (i > 0 and taken[i - 1][1] > start) or (i < len(taken) and taken[i][0] < end):
            continue
        taken.insert(i, (start, end, hit))
        starts.insert(i, start)
    return taken


class _Walk:
    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.left = scrubber.max_value_chars

    def text(self, text: str) -> str:
        if self.left <= 0:
            return "<OMITTED>"
        self.left -= min(len(text), self.scrubber.max_field_chars) + _PER_STRING
        return self.scrubber.scrub_text(text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 7:
            scrubbed = self.text(str(value))
            return value if scrubbed == str(value) else scrubbed
        return value
