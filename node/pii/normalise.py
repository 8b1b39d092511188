"""Unicode normalisation before detection, with a map back to the text as written.

PII is written in many forms that mean the same characters: full-width ``ＪＯＨＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ``, a no-break
space inside a phone number, Arabic-Indic or Devanagari digits. Detectors read the NFKC form with every decimal
digit as ASCII; the scrubber then replaces the matching spans of the *original* text, so everything that is not
PII is stored exactly as it was written.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass

_DIGITS = {c: str(unicodedata.decimal(chr(c))) for c in range(0x80, sys.maxunicode + 1)
           if unicodedata.decimal(chr(c), None) is not None}
"""Every non-ASCII decimal digit (category Nd) to its ASCII digit: one character to one, so offsets hold."""


@dataclass(frozen=True, slots=True)
class Normalised:
    """``text`` is what detectors read; ``origin[i]`` is the index in the original of ``text[i]`` (``None``
    when the two are the same length and aligned one to one)."""

    text: str
    origin: list[int] | None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span a ``[start, end)`` span of :attr:`text` came from."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> Normalised:
    """NFKC, character by character so each output character knows its source; ASCII text is returned as is.

    Per character rather than whole-string NFKC: the only difference is that a base letter and a separate
    combining mark are not composed into one character, which the detectors accept either way."""
    if text.isascii():
        return Normalised(text, None)
    digits = text.translate(_DIGITS)
    if unicodedata.is_normalized("NFKC", digits):
        return Normalised(digits, None)
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(digits):
        piece = unicodedata.normalize("NFKC", char) if not char.isascii() else char
        if len(piece) != 1 or not piece.isascii():
            piece = piece.translate(_DIGITS)  # NFKC can produce digits too: circled, superscript
        pieces.append(piece)
        origin.extend([index] * len(piece))
    return Normalised("".join(pieces), origin)
