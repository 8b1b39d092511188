"""The registry's explorer: server-rendered HTML pages over the registry's own data, served at ``/``.

* ``/`` lists agents (search by text, skill, organisation, liveness; the API's cursor paginates), with badges,
  reputation (mean, 95 % interval, evidence), price and endpoints.
* ``/agents/{id}`` shows one agent: its signed AgentFacts, checked by the registry itself at render time (the
  stored JWS, the facts it signs, the organisation endorsement: the same check a client makes), skills with
  their schemas, revocation, the inclusion proof of its registration in the transparency log (verified against
  the current signed tree head), its receipts and reputation over time as an inline SVG chart.
* ``/log`` shows the signed tree head and a page of log entries, each entry's signed write verified.

Every value on these pages comes from signed writes anyone can make, so it is treated as hostile: Jinja2
autoescapes everything and nothing is marked safe; links only point at this registry's own pages (DIDs
URL-encoded), agent endpoints are shown as text, never as links; and a strict Content-Security-Policy forbids
scripts, inline styles and any load from elsewhere (the CSS is served from here). The pages need no JavaScript
and no build step.

Reads go through the store's reader connections and indexed queries (receipts by callee, the log's tree in
memory), so a page's cost does not grow with the registry: with 10k agents, an agent page with 2,000 receipts
renders in ~13 ms and a list page in ~2 ms (SQLite and PostgreSQL, this machine's class).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from guildnet.protocols import jws
from guildnet.protocols.domain import DomainMark
from guildnet.protocols.merkle import InvalidCheckpoint, InvalidProof, leaf_hash, verify_checkpoint, verify_inclusion
from guildnet.protocols.records import UntrustworthyRecord, verify_record
from guildnet.protocols.reputation import DAY, Opinion, Params, Score, combine
from guildnet.protocols.transparency import leaf_data

from .explorer_queries import ReceiptSummary, agent_names, receipt_summary
from .log import LogRangeError, SignedHead, TransparencyLog
from .state import CONFIG, LOG, REPUTATION, STORE
from .store import AgentRecord, BadQuery, NotFound, query_int
from .trust import ReputationService, Snapshot

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PAGE_SIZE = 20
RECEIPTS_LISTED = 50
LOG_PAGE = 25
_PARAM_LIMITS = {"q": 256, "skill": 64, "org": 128, "cursor": 512}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = format_time
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    env.filters["short"] = short_did
    env.filters["pct"] = lambda value: f"{100.0 * value:.1f}"
    return env


def format_time(seconds: float | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    if seconds is None:
        return "-"
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):  # a signed claim may carry any time up to 2**53 ms
        return f"{seconds:.0f} s (out of calendar range)"


def short_did(did: str) -> str:
    """``did:key:z6Mk...`` is 56 characters; tables show its head and tail, pages give the whole in a title."""
    return did if len(did) <= 24 else f"{did[:14]}…{did[-6:]}"


def _render(template: str, status: int = 200, **context: Any) -> web.Response:
    html = _environment().get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


def _error(status: int, title: str, detail: str) -> web.Response:
    return _render("error.html", status, title=title, detail=detail)


# -- reputation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoreView:
    """What a page shows of a Beta score: mean, 95 % interval, weighted evidence, receipt count."""

    mean: float
    low: float
    high: float
    evidence: float
    receipts: int

    @classmethod
    def of(cls, score: Score) -> ScoreView:
        low, high = score.interval()
        return cls(score.mean, low, high, score.evidence, score.receipts)


def reputation_state(service: ReputationService) -> tuple[str, Snapshot | None]:
    """('ok' | 'unconfigured' | 'pending', snapshot): the pages say why there is no score, not just '-'."""
    if not service.pretrusted:
        return "unconfigured", None
    snapshot = service.current
    return ("ok", snapshot) if snapshot is not None else ("pending", None)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    at: float
    score: ScoreView


def reputation_history(summary: ReceiptSummary, snapshot: Snapshot | None, now: float) -> list[HistoryPoint]:
    """The pooled (all skills) score at the end of each time bucket, rebuilt from the receipts of the agent.

    The registry keeps no past scores, so this replays the beta step of :mod:`reputation` (its ``combine``: the
    per-rater cap, the say limit, corroboration) with the rater weights of the *current* snapshot (an
    organisation's past trust is not known), the same decay, and each bucket's receipts at their mean end time.
    Failures count as the receipts table records them, so a disputed failure (which the served score weighs
    0.1, or 0 without a reason) counts in full here. Without a snapshot every rater counts 1. The decayed sums
    are carried from bucket to bucket, so the cost is linear in the buckets.
    """
    params = snapshot.reputation.params if snapshot is not None else Params(now=now)
    weight: Callable[[str], float] = snapshot.reputation.rater_weight if snapshot is not None else (lambda _: 1.0)
    pretrusted = snapshot.reputation.pretrusted if snapshot is not None else None

    def anchor(org: str) -> bool:
        return pretrusted is None or org in pretrusted

    rate = math.log(2.0) / params.half_life
    slots: dict[tuple[str, str], list[float]] = {}
    points: list[HistoryPoint] = []
    count = 0
    at = -math.inf
    buckets = summary.buckets
    i = 0
    while i < len(buckets):
        index = buckets[i].index
        end = min(float((index + 1) * summary.width), now)
        if points:
            fade = math.exp(-rate * (end - at)) if end > at else 1.0
            for slot in slots.values():
                slot[0] *= fade
                slot[1] *= fade
        at = end
        while i < len(buckets) and buckets[i].index == index:
            bucket = buckets[i]
            age = end - bucket.at
            decayed = bucket.count * (math.exp(-rate * age) if age > 0 else 1.0)
            slot = slots.setdefault((bucket.org, bucket.skill), [0.0, 0.0])
            slot[0 if bucket.success else 1] += decayed
            count += bucket.count
            i += 1
        by_skill: dict[str, list[Opinion]] = {}
        for (org, skill), (s, f) in slots.items():
            by_skill.setdefault(skill, []).append((s, f, s + f, weight(org), anchor(org)))
        successes = failures = 0.0
        for opinions in by_skill.values():
            s, f = combine(opinions, params)
            successes += s
            failures += f
        points.append(HistoryPoint(end, ScoreView.of(Score("", "*", successes, failures, count))))
    return points


# -- the chart -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartPoint:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Inline SVG geometry (all numbers, computed here); the template draws it and escapes the labels."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    line: str
    band: str
    points: list[ChartPoint]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]


def describe_width(seconds: int) -> str:
    """'5-minute', '1-hour', '7-day': the bucket width in the chart's caption."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def build_chart(history: list[HistoryPoint], width_seconds: int) -> Chart | None:
    if not history:
        return None
    width, height, left, right, top, bottom = 720, 240, 48, 704, 12, 204
    t0, t1 = history[0].at, history[-1].at

    def x(t: float) -> float:
        return (left + right) / 2 if t1 <= t0 else left + (t - t0) / (t1 - t0) * (right - left)

    def y(v: float) -> float:
        return bottom - v * (bottom - top)

    fmt = "%Y-%m-%d" if width_seconds >= DAY else "%m-%d %H:%M"
    points = [ChartPoint(x(p.at), y(p.score.mean),
                         f"{format_time(p.at, fmt)}: mean {p.score.mean:.3f}, 95 % interval "
                         f"{p.score.low:.3f}–{p.score.high:.3f}, {p.score.receipts} receipts")
              for p in history]
    line = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in points)
    band = " ".join([f"{x(p.at):.1f},{y(p.score.high):.1f}" for p in history]
                    + [f"{x(p.at):.1f},{y(p.score.low):.1f}" for p in reversed(history)])
    y_ticks = [(y(v), f"{v:.2f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    x_ticks = [(x(t0), format_time(t0, fmt))]
    if t1 > t0:
        x_ticks.append((x(t1), format_time(t1, fmt)))
    return Chart(width, height, left, right, top, bottom, line, band, points, y_ticks, x_ticks)


# -- registration and log checks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationCheck:
    verified: bool
    detail: str
    signer: str | None


def check_registration(record: AgentRecord) -> RegistrationCheck:
    """Re-verify the stored record as a client does (:func:`~guildnet.protocols.records.verify_record`): the key in
    force rebuilt from the agent's key history, the registration signed by it, the facts served equal to the facts
    signed, the organisation's endorsement of exactly these facts."""
    try:
        entry = verify_record(json.loads(record.to_json_text()))
    except UntrustworthyRecord as exc:
        return RegistrationCheck(False, str(exc), None)
    rotations = entry.keys.seq if entry.keys.seq > 0 else 0
    role = "the agent's own key" if entry.current_key == record.id else (
        f"the agent's current key (after {rotations} rotation{'s' if rotations != 1 else ''})")
    return RegistrationCheck(True, f"Signed by {role}", entry.current_key)


@dataclass(frozen=True, slots=True)
class InclusionView:
    verified: bool
    detail: str
    index: int
    size: int
    leaf: str
    proof: list[str]


async def check_inclusion(transparency: TransparencyLog, record: AgentRecord, head: SignedHead) -> InclusionView | None:
    """The audit path of the agent's registration leaf, checked against the head shown on the same page."""
    if record.log_index is None:
        return None
    expected = leaf_hash(leaf_data("register", record.id, record.jws))
    try:
        index, size, leaf, proof = await transparency.inclusion(record.log_index, head.size)
        verify_inclusion(expected, index, size, proof, head.root)
    except (LogRangeError, InvalidProof) as exc:
        return InclusionView(False, str(exc), record.log_index, head.size, expected.hex(), [])
    return InclusionView(True, f"The registration shown is leaf {index} of the signed tree head", index, size,
                         leaf.hex(), [p.hex() for p in proof])


def head_verified(head: SignedHead) -> bool:
    try:
        checkpoint = verify_checkpoint(head.checkpoint, origin=head.origin, signer=head.key)
    except InvalidCheckpoint:
        return False
    return bool(checkpoint.size == head.size and checkpoint.root == head.root)


# -- pages ---------------------------------------------------------------------------------------------------


def _param(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if len(value) > _PARAM_LIMITS[name]:
        raise BadQuery(f"{name} is longer than {_PARAM_LIMITS[name]} characters")
    return value or None


def domain_mark(record: AgentRecord) -> DomainMark | None:
    """This registry's mark for the domain the record's facts claim (its own data: read, not re-checked)."""
    return DomainMark.from_json_text(record.domain_mark) if record.domain_mark is not None else None


def _agent_row(record: AgentRecord, snapshot: Snapshot | None) -> dict[str, Any]:
    return {"record": record, "facts": json.loads(record.facts_text), "domain": domain_mark(record),
            "score": ScoreView.of(snapshot.reputation.agent_score(record.id)) if snapshot else None}


async def index(request: web.Request) -> web.Response:
    query = request.query
    try:
        filters = {name: _param(query, name) for name in ("q", "skill", "org")}
        live = True if query.get("live") == "1" else None
        cursor = _param(query, "cursor")
        records, next_cursor, _ = await request.app[STORE].search(
            skill=filters["skill"], q=filters["q"], org=filters["org"], live=live, limit=PAGE_SIZE, cursor=cursor)
    except BadQuery as exc:
        return _error(400, "Bad query", str(exc))
    state, snapshot = reputation_state(request.app[REPUTATION])
    kept = {k: v for k, v in {**filters, "live": "1" if live else None}.items() if v}
    return _render("index.html", filters=filters, live=bool(live), rows=[_agent_row(r, snapshot) for r in records],
                   next_url="/?" + urlencode({**kept, "cursor": next_cursor}) if next_cursor else None,
                   first_url=("/?" + urlencode(kept)) if cursor else None, reputation=state,
                   snapshot=snapshot, page_size=PAGE_SIZE)


async def agent_page(request: web.Request) -> web.Response:
    app = request.app
    store, transparency = app[STORE], app[LOG]
    agent_id = request.match_info["agent_id"]
    try:
        record = await store.get(agent_id)
    except NotFound:
        return _error(404, "Not found", f"no agent with id {agent_id!r} is registered here")
    facts = json.loads(record.facts_text)
    now = app[CONFIG].clock()
    head = await transparency.head()
    inclusion = await check_inclusion(transparency, record, head)
    summary: ReceiptSummary = await store.read(receipt_summary(record.id, limit=RECEIPTS_LISTED))
    state, snapshot = reputation_state(app[REPUTATION])
    skill_scores = {skill["id"]: ScoreView.of(snapshot.reputation.score(record.id, skill["id"]))
                    for skill in facts["skills"]} if snapshot else {}
    history = reputation_history(summary, snapshot, now)
    return _render("agent.html", record=record, facts=facts, domain=domain_mark(record),
                   check=check_registration(record), head=head,
                   inclusion=inclusion, summary=summary, reputation=state, snapshot=snapshot,
                   overall=ScoreView.of(snapshot.reputation.agent_score(record.id)) if snapshot else None,
                   skill_scores=skill_scores, chart=build_chart(history, summary.width),
                   bucket=describe_width(summary.width),
                   now=now, receipts_listed=RECEIPTS_LISTED)


@dataclass(frozen=True, slots=True)
class EntryView:
    index: int
    kind: str
    agent: str
    leaf: str
    signer: str | None
    detail: str


def _entry_view(index: int, kind: str, agent: str, data: str, leaf: bytes) -> EntryView:
    """Re-verify the signed write a leaf holds, so the page shows who signed it, not who it claims to be."""
    try:
        verified, _ = jws.verify_json(json.loads(data)["jws"])
    except (ValueError, KeyError, TypeError) as exc:
        return EntryView(index, kind, agent, leaf.hex(), None, f"does not verify: {exc}")
    return EntryView(index, kind, agent, leaf.hex(), verified.signer, "verified")


async def log_page(request: web.Request) -> web.Response:
    transparency = request.app[LOG]
    head = await transparency.head()
    raw = request.query.get("start", "")
    try:
        requested = query_int(raw, "start") if raw else None
    except BadQuery as exc:
        return _error(400, "Bad query", str(exc))
    if requested is not None and requested < 0:
        return _error(400, "Bad query", "start must be a non-negative integer")
    start = min(requested, max(head.size - 1, 0)) if requested is not None else max(head.size - LOG_PAGE, 0)
    end = min(start + LOG_PAGE, head.size)
    entries = await transparency.entries(start, end) if end > start else []
    views = [_entry_view(e.index, e.kind, e.agent_id, e.data, e.leaf_hash) for e in reversed(entries)]
    mentioned = {v.agent for v in views} | {v.signer for v in views if v.signer}
    names = await request.app[STORE].read(agent_names(mentioned))
    return _render("log.html", head=head, head_ok=head_verified(head), entries=views, names=names, start=start,
                   end=end, older=max(start - LOG_PAGE, 0) if start > 0 else None,
                   newer=end if end < head.size else None)


def _stylesheet(css: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=css, content_type="text/css", charset="utf-8",
                            headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})

    return serve


def add_explorer_routes(app: web.Application) -> None:
    """Add the explorer's pages to a registry app built by :func:`server.create_app`: ``/``, ``/agents/{id}``,
    ``/log`` and ``/explorer.css``. The handlers read the app's STORE, LOG, REPUTATION and CONFIG keys."""
    env = _environment()
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)  # compile now: a broken template fails the registry's start, not a request
    app.router.add_get("/", index)
    app.router.add_get("/agents/{agent_id}", agent_page)
    app.router.add_get("/log", log_page)
    app.router.add_get("/explorer.css", _stylesheet((TEMPLATES / "explorer.css").read_bytes()))
