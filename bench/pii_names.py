"""English person names: what spaCy's detector finds and what it costs, beside the whole scrubber and Presidio.

On templated support tickets signed with a known full name (bench/tickets.py), measures per text: spaCy's
detector alone (``spacy_name_detector``, tokenizer + NER), the whole ``Scrubber.scrub_text`` with names on
(spaCy and Rampart on these English texts; bench/pii_multilingual.py measures the other languages) and
off, and, when ``presidio-analyzer`` is importable, Presidio's analyzer for ``PERSON`` on the same spaCy
pipeline (the alternative we did not take). Recall = the signed name is inside a detected span.

    python bench/pii_names.py [--texts 200]

Prints a table and writes bench/results/pii_names.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from measure import percentile
from tickets import Ticket, tickets

from guildnet.node.pii import SPACY_MODELS, Scrubber, Span, spacy_name_detector

RESULTS = Path(__file__).with_name("results")


def timed(label: str, detect: Callable[[str], Sequence[Span]], texts: list[Ticket]) -> dict[str, Any]:
    detect(texts[0].text)  # warm-up: first call builds caches
    latencies, found, spans = [], 0, []
    for ticket in texts:
        started = time.perf_counter()
        detected = list(detect(ticket.text))
        latencies.append((time.perf_counter() - started) * 1000)
        spans.append(sorted(detected))
        found += any(ticket.name and ticket.name in ticket.text[s:e] for s, e in detected)
    latencies.sort()
    return {"detector": label, "texts": len(texts), "names_found": found, "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "spans": spans}


def scrubbed_names(scrubber: Scrubber) -> Callable[[str], Sequence[Span]]:
    """The whole scrubber as a detector: the span of the text if its name is gone from the output."""
    def detect(text: str) -> Sequence[Span]:
        return [(0, len(text))] if "<PERSON>" in scrubber.scrub_text(text) else []
    return detect


def presidio_detector() -> Callable[[str], Sequence[Span]] | None:
    if importlib.util.find_spec("presidio_analyzer") is None:
        return None
    import tldextract
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())  # offline
    model = next(m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None)
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return lambda text: [(r.start, r.end) for r in engine.analyze(text, language="en", entities=["PERSON"],
                                                                   score_threshold=0.6)]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=200)
    args = parser.parse_args(argv)
    texts = tickets(args.texts, with_names=True)
    started = time.perf_counter()
    spacy = spacy_name_detector()
    load_s = time.perf_counter() - started
    if spacy is None:
        sys.exit("spaCy or an English pipeline is missing: pip install 'guildnet[pii]'")
    rows = [timed("spaCy NER alone (node/pii/names.py)", spacy, texts)]
    for names in ("on", "off"):
        rows.append(timed(f"Scrubber.scrub_text, names {names}", scrubbed_names(Scrubber(names=names)), texts))
    presidio = presidio_detector()
    if presidio is not None:
        rows.append(timed("Presidio analyzer, PERSON", presidio, texts))
        rows[-1]["same_spans_as_spacy"] = sum(a == b for a, b in zip(rows[0]["spans"], rows[-1]["spans"], strict=True))
    print(f"spaCy pipeline load: {load_s:.2f} s (once per process)")
    print(f"{'detector':<34} {'names found':>12} {'p50 ms':>7} {'p95 ms':>7}")
    for row in rows:
        found = f"{row['names_found']}/{row['texts']}"
        agreeing = row.get("same_spans_as_spacy")
        same = f"  same spans as spaCy: {agreeing}/{row['texts']}" if agreeing is not None else ""
        print(f"{row['detector']:<34} {found:>12} {row['p50_ms']:>7.2f} {row['p95_ms']:>7.2f}{same}")
    if presidio is None:
        print("Presidio not installed: pip install presidio-analyzer==2.2.366 to compare")
    RESULTS.mkdir(exist_ok=True)
    for row in rows:
        del row["spans"]
    (RESULTS / "pii_names.json").write_text(json.dumps({"load_s": load_s, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
