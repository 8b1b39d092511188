"""PII recall across languages and written forms, before (main's scrubber) and after, side by side.

Writes its own labelled set (seeded): support messages in English, German, French, Spanish, Vietnamese,
Russian and Chinese, each holding one to three known PII values (names, e-mail addresses, phone numbers in
national and international formats, IBANs in any case and grouping, cards with any separator, US SSNs, IP
addresses), some of them full-width, plus PII-free messages to count what is scrubbed that is not PII.
A value counts as caught when neither it nor its letters-and-digits form remains in the scrubbed text.

"Before" is node/pii.py as it was at commit 760501d (read with ``git show``, so this script needs the
repository's history); "after" is ``guildnet.node.pii``. Also measured: time per text, and the worst time
for hostile inputs (runs of colons, digits, separators) at sizes the before scrubber survives and, after,
at the field cap (8,192 characters) and at four times it (cut, not scanned).

    python bench/pii_multilingual.py [--texts 420] [--seed 7] [--no-before]

Prints tables and writes bench/results/pii_multilingual.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from measure import percentile
from stdnum import iban, luhn

from guildnet.node.pii import MAX_FIELD_CHARS, Scrubber

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "760501d"
"""The last commit with the single-module scrubber (regexes over raw text, spaCy English for names)."""

NAMES = {
    "en": ["John Smith", "Emily Clarke", "Michael Brown", "Sarah Davis", "David Wilson", "Aisha Khan"],
    "de": ["Jürgen Müller", "Anna Schmidt", "Lukas Becker", "Sophie Wagner", "Klaus Fischer", "Jörg Weiß"],
    "fr": ["Marie Dubois", "Jean Martin", "Camille Lefèvre", "Luc Moreau", "Élodie Girard", "François Roux"],
    "es": ["José García", "María López", "Carlos Martínez", "Lucía Fernández", "Javier Ruiz", "Nuria Sánchez"],
    "vi": ["Khai", "Nguyễn Văn An", "Trần Thị Mai", "Lê Minh", "Phạm Hùng", "Khai Nguyen"],
    "ru": ["Иван", "Иван Петров", "Ольга Смирнова", "Дмитрий Козлов", "Анна Волкова", "Сергей Попов"],
    "zh": ["王伟", "李娜", "张伟", "刘洋", "陈静", "杨帆"],
}
MAILBOXES = {
    "en": ["john.smith@example.com", "emily+orders@mail.example.co.uk"],
    "de": ["jürgen.müller@example.de", "anna.schmidt@beispiel.de"],
    "fr": ["élodie.girard@exemple.fr", "jean.martin@exemple.fr"],
    "es": ["josé@correo.es", "maría.lópez@ejemplo.es"],
    "vi": ["khai.nguyen@example.vn", "nguyễn.an@ví-dụ.vn"],
    "ru": ["иван@почта.рф", "olga.smirnova@example.ru"],
    "zh": ["wangwei@example.cn", "王伟@例子.中国"],
}
REGIONS = {"en": ["US", "GB"], "de": ["DE"], "fr": ["FR"], "es": ["ES"], "vi": ["VN"], "ru": ["RU"], "zh": ["CN"]}
IBAN_COUNTRIES = {"en": "GB", "de": "DE", "fr": "FR", "es": "ES", "vi": "DE", "ru": "DE", "zh": "GB"}
BBAN = {"DE": "370400440532013000", "GB": "NWBK60161331926819", "FR": "20041010050500013M02606",
        "ES": "21000418450200051332"}
TEMPLATES = {
    "en": ["Hi, this is {name}. Please call me at {phone} or write to {email}.",
           "Refund order 4412 to IBAN {iban}; the card was {card}. Thanks, {name}",
           "My SSN is {ssn} and my number is {phone}. Regards, {name}",
           "Customer {name} ({email}) logged in from {ip} and asked about invoice 2026-118."],
    "de": ["Hallo, hier ist {name}. Rufen Sie mich unter {phone} an oder schreiben Sie an {email}.",
           "Bitte erstatten Sie Bestellung 4412 auf IBAN {iban}, Karte {card}. Gruß, {name}",
           "Mein Name ist {name}, Telefon {phone}. Die Rechnung vom 29.11.2026 ist falsch."],
    "fr": ["Bonjour, je suis {name}. Appelez-moi au {phone} ou écrivez à {email}.",
           "Merci de rembourser la commande 4412 sur l'IBAN {iban}, carte {card}. Cordialement, {name}",
           "{name} a appelé deux fois depuis le {phone} au sujet de la facture 2026-118."],
    "es": ["Hola, soy {name}. Llámeme al {phone} o escriba a {email}.",
           "Por favor, reembolse el pedido 4412 al IBAN {iban}, tarjeta {card}. Saludos, {name}",
           "{name} llamó dos veces desde el {phone} por la factura 2026-118."],
    "vi": ["Xin chào, tôi là {name}. Vui lòng gọi {phone} hoặc gửi thư tới {email}.",
           "Hoàn tiền đơn hàng 4412 vào IBAN {iban}, thẻ {card}. Cảm ơn, {name}",
           "{name} đã gọi hai lần từ số {phone} về hóa đơn 2026-118."],
    "ru": ["Здравствуйте, меня зовут {name}. Позвоните мне по номеру {phone} или напишите на {email}.",
           "Верните деньги за заказ 4412 на IBAN {iban}, карта {card}. Спасибо, {name}",
           "{name} звонил дважды с номера {phone} по поводу счёта 2026-118."],
    "zh": ["您好，我是{name}。请拨打{phone}或发邮件到{email}。",
           "请把订单4412的退款打到IBAN {iban}，卡号{card}。谢谢，{name}",
           "{name}从{phone}打了两次电话，询问发票2026-118。"],
}
CLEAN = {
    "en": ["Order 4412 was shipped on 2026-11-29; the refund of 42.50 EUR follows.",
           "The printer on floor 3 is jammed again.",
           "Please reset the password for the shared mailbox.", "Delivery to Lyon is late, tracking ref A7048."],
    "de": ["Bestellung 4412 wurde am 29.11.2026 verschickt, Erstattung 42,50 EUR folgt.",
           "Der Drucker im 3. Stock klemmt schon wieder.", "Die Lieferung nach Berlin ist verspätet, Sendung A7048."],
    "fr": ["La commande 4412 a été expédiée le 29/11/2026, remboursement de 42,50 EUR.",
           "L'imprimante du 3e étage est encore bloquée."],
    "es": ["El pedido 4412 se envió el 29/11/2026; el reembolso de 42,50 EUR sigue.",
           "La impresora del tercer piso está atascada otra vez."],
    "vi": ["Đơn hàng 4412 đã được gửi ngày 29/11/2026, hoàn tiền 42,50 EUR.", "Máy in ở tầng 3 lại bị kẹt."],
    "ru": ["Заказ 4412 отправлен 29.11.2026, возврат 42,50 EUR.", "Принтер на третьем этаже снова застрял."],
    "zh": ["订单4412已于2026-11-29发货，退款42.50欧元。", "三楼的打印机又卡纸了。"],
}
FULL_WIDTH = {c: chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


@dataclass
class Sample:
    language: str
    text: str
    values: list[tuple[str, str]] = field(default_factory=list)  # (type, value as written)


def _phone(rng: random.Random, region: str) -> str:
    number = phonenumbers.example_number_for_type(region, rng.choice(
        [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]))
    assert number is not None
    while True:  # vary the subscriber digits, keep the number valid
        national = str(number.national_number)
        keep = max(3, len(national) - 4)
        candidate = phonenumbers.parse(f"+{number.country_code}{national[:keep]}"
                                       f"{rng.randrange(10 ** (len(national) - keep)):0{len(national) - keep}d}")
        if phonenumbers.is_valid_number(candidate):
            break
    style = rng.choice(["national", "national", "international", "digits"])
    if style == "international":
        return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    written = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(c for c in written if c.isdigit()) if style == "digits" else written


def _iban(rng: random.Random, country: str) -> str:
    bban = BBAN[country]
    compact = country + iban.calc_check_digits(country + "00" + bban) + bban
    grouped = " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return rng.choice([compact, grouped, grouped.lower(), grouped.replace(" ", "-"), compact.lower()])


def _card(rng: random.Random) -> str:
    body = rng.choice(["4", "51", "55"]) + "".join(rng.choice("0123456789") for _ in range(13))
    number = (body + "0")[:15]
    number += luhn.calc_check_digit(number)
    separator = rng.choice([" ", "-", ".", "", "/"])
    return separator.join(number[i:i + 4] for i in range(0, 16, 4))


def _ssn(rng: random.Random) -> str:
    area, group, serial = rng.randrange(1, 666), rng.randrange(1, 100), rng.randrange(1, 10000)
    separator = rng.choice("- ")
    return f"{area:03d}{separator}{group:02d}{separator}{serial:04d}"


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"203.0.113.{rng.randrange(1, 255)}"
    return f"2001:db8:{rng.randrange(1, 0xffff):x}::{rng.randrange(1, 0xffff):x}"


def dataset(count: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    rng = random.Random(seed)
    samples: list[Sample] = []
    languages = list(TEMPLATES)
    for i in range(count):
        language = languages[i % len(languages)]
        template = rng.choice(TEMPLATES[language])
        slots = {"name": rng.choice(NAMES[language]), "email": rng.choice(MAILBOXES[language]),
                 "phone": _phone(rng, rng.choice(REGIONS[language])), "iban": _iban(rng, IBAN_COUNTRIES[language]),
                 "card": _card(rng), "ssn": _ssn(rng), "ip": _ip(rng)}
        if rng.random() < 0.1:  # typed on a full-width keyboard
            for key in ("email", "phone", "card"):
                slots[key] = slots[key].translate(FULL_WIDTH)
        values = [(kind.upper(), slots[kind]) for kind in slots if "{" + kind + "}" in template]
        samples.append(Sample(language, template.format(**slots), values))
    clean = [Sample(language, text) for language, texts in CLEAN.items() for text in texts]
    return samples, clean


def caught(scrubbed: str, value: str) -> bool:
    compact = "".join(c for c in value if c.isalnum())
    return value not in scrubbed and (len(compact) < 4 or compact not in "".join(c for c in scrubbed if c.isalnum()))


def before_scrubber() -> Callable[[str], str] | None:
    """main's Scrubber at :data:`BEFORE_COMMIT`, names on (spaCy English), from the repository's history."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:node/pii.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("pii_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{BEFORE_COMMIT}:node/pii.py", "exec"), module.__dict__)
    scrubber = module.Scrubber(names="on" if importlib.util.find_spec("spacy") else "off")
    return scrubber.scrub_text  # type: ignore[no-any-return]


def measure(scrub: Callable[[str], str], samples: list[Sample], clean: list[Sample]) -> dict[str, Any]:
    scrub("Warm-up: John Smith, Иван Петров, 王伟")  # first calls load the name models
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[str] = []
    latencies = []
    for sample in samples:
        started = time.perf_counter()
        scrubbed = scrub(sample.text)
        latencies.append((time.perf_counter() - started) * 1000)
        for kind, value in sample.values:
            hit = caught(scrubbed, value)
            for tally in (by_type[kind], by_language[sample.language]):
                tally[0] += hit
                tally[1] += 1
            if not hit:
                missed.append(f"{sample.language} {kind}: {value}")
    changed = [s.text for s in clean if scrub(s.text) != s.text]
    latencies.sort()
    return {"by_type": dict(by_type), "by_language": dict(by_language),
            "recall": sum(v[0] for v in by_type.values()) / max(1, sum(v[1] for v in by_type.values())),
            "clean_texts": len(clean), "clean_changed": len(changed), "clean_changed_examples": changed[:5],
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "max_ms": latencies[-1], "missed_examples": sorted(set(missed))[:40]}


HOSTILE = {"colons": ":", "digits and spaces": "1 ", "digit pairs": "12 ", "dotted digits": "1.",
           "IBAN-like words": "AB12 ", "at signs": "a@", "IPv4 runs": "1.1.1.1 ", "hex and colons": "a:",
           "phone numbers": "0171 1234568 "}


def hostile(scrub: Callable[[str], str], sizes: list[int]) -> dict[str, dict[int, float]]:
    """Seconds to scrub each hostile pattern repeated to each size (characters)."""
    table: dict[str, dict[int, float]] = {}
    for name, unit in HOSTILE.items():
        table[name] = {}
        for size in sizes:
            text = (unit * (size // len(unit) + 1))[:size]
            started = time.perf_counter()
            scrub(text)
            table[name][size] = time.perf_counter() - started
    return table


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=420)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-before", action="store_true", help="skip main's scrubber")
    args = parser.parse_args(argv)
    samples, clean = dataset(args.texts, args.seed)
    after = Scrubber(names="auto")
    scrubbers: dict[str, Callable[[str], str]] = {"after": after.scrub_text}
    before = None if args.no_before else before_scrubber()
    if before is not None:
        scrubbers = {"before": before, **scrubbers}
    results: dict[str, Any] = {"texts": len(samples), "values": sum(len(s.values) for s in samples),
                               "name_models_after": list(after.name_models), "seed": args.seed, "runs": {}}
    for label, scrub in scrubbers.items():
        results["runs"][label] = measure(scrub, samples, clean)
    runs = results["runs"]
    print(f"{len(samples)} texts, {results['values']} PII values, 7 languages; name models after: "
          f"{', '.join(after.name_models) or 'none'}")
    header = "".join(f"{label:>16}" for label in runs)
    for key, title in (("by_type", "type"), ("by_language", "language")):
        print(f"\nrecall by {title:<10}{header}")
        for row in sorted(next(iter(runs.values()))[key]):
            cells = "".join(f"{r[key][row][0]:>7}/{r[key][row][1]:<4} {r[key][row][0] / r[key][row][1]:>4.0%}"
                            for r in runs.values())
            print(f"  {row:<18}{cells}")
    print(f"\n{'':<20}{header}")
    for key, title, unit in (("recall", "recall, all values", "%"), ("p50_ms", "p50 ms per text", ""),
                             ("p95_ms", "p95 ms per text", ""), ("max_ms", "max ms per text", "")):
        print(f"  {title:<18}" + "".join(f"{r[key] * 100:>15.1f}%" if unit else f"{r[key]:>16.2f}"
                                         for r in runs.values()))
    print(f"  {'PII-free changed':<18}" + "".join(f"{r['clean_changed']:>11}/{r['clean_texts']:<4}"
                                                  for r in runs.values()))
    sizes_after = [800, MAX_FIELD_CHARS, 4 * MAX_FIELD_CHARS]
    results["hostile_after"] = hostile(after.scrub_text, sizes_after)
    if before is not None:
        results["hostile_before"] = hostile(before, [200, 400, 800])
    print("\nworst case, seconds per string (hostile input)")
    print(f"  {'pattern':<18}" + (f"{'before @200/400/800 chars':>28}" if before else "") +
          f"{'after @800/8K/32K chars':>30}")
    for name in HOSTILE:
        cells = ""
        if before is not None:
            cells += f"{' / '.join(f'{s:.3f}' for s in results['hostile_before'][name].values()):>28}"
        cells += f"{' / '.join(f'{s:.3f}' for s in results['hostile_after'][name].values()):>30}"
        print(f"  {name:<18}{cells}")
    for label, run in runs.items():
        print(f"\n{label}: missed (first of {len(run['missed_examples'])}): {run['missed_examples'][:12]}")
        print(f"{label}: PII-free texts changed: {run['clean_changed_examples']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pii_multilingual.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
