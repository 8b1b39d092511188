"""Every unrevoked agent's words in the registry process: a tantivy full-text index that ranks a search by words
over all of its matches, where the database ranked a window of the newest :data:`~.search.RANK_WINDOW`.

The database's ranking reads each match (FTS5 bm25, PostgreSQL ``ts_rank`` on the row), so it was cut at 300
matches: a word common to 12.5 % of 1M agents still cost 5.9 ms p50 on SQLite, and its ranking saw 300 of
125,000 matches. tantivy scores BM25 from its postings with block-max WAND (top-k without scoring every match):
~0.5 ms at 1M agents for a common word. Fields and weights are the database's (name 10, tags 5, description 1,
FTS5's ``bm25`` weights), the words tokenized as FTS5's ``porter unicode61`` does (alphanumeric runs, lower-case,
diacritics folded, English stems), and every word of the query must match, in any field. Skill ids and the
organisation (id and name) are exact fields, so filters apply inside the query; liveness is checked in the
database for the ranked pks (it changes with time, not with the change feed).

The index follows the change feed as the vector index does (:mod:`.feed`): an agent registered, updated or
revoked since its position is read again (revoked: removed). A tantivy commit costs ~4-40 ms (measured at
200k-1M agents), too much for each search under a write load, so changes are committed once a second by the
store's upkeep loop; a change applied since the last commit is *pending*: the committed index's copy of that
agent is excluded from the query (``MustNot`` on its pk) and its new text is matched and scored here with the
same BM25 (the committed index's document frequencies; field lengths up to 40 tokens exact, tantivy rounds
longer ones down a little), so a write is found by the very next search on any replica.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tantivy
from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

FIELDS = {"name": 10.0, "tags": 5.0, "description": 1.0}
"""Text fields and their weights (FTS5's bm25 weights of the same columns)."""
K1, B = 1.2, 0.75
"""tantivy's BM25 parameters (its defaults), for scoring the pending agents alike."""
MAX_QUERY_WORDS = 16
WRITER_HEAP = 64_000_000
"""Bytes the writer buffers before it writes a segment (tantivy's minimum is 15 MB)."""
_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_AGENT_TEXT = ("a.pk, a.revoked, a.name, a.tags, a.description, a.org_id, a.org_name, "
               "(SELECT {agg} FROM agent_skills s WHERE s.agent_pk = a.pk)")
PAGE = 20_000
"""Agents read per statement while the index is built."""


def _agg(postgres: bool) -> str:
    return "string_agg(s.skill_id, ' ')" if postgres else "group_concat(s.skill_id, ' ')"


def changed_sql(*, postgres: bool) -> str:
    """The agents changed after ``:after`` up to ``:upto`` (at most ``:limit`` changes), as rows of (seq,
    :data:`_AGENT_TEXT`): their text now, whichever change named them."""
    return (f"SELECT c.seq, {_AGENT_TEXT.format(agg=_agg(postgres))} FROM changes c JOIN agents a ON a.id = c.agent_id "
            "WHERE c.seq > :after AND c.seq <= :upto AND c.kind IN ('registered', 'updated', 'revoked') "
            "ORDER BY c.seq LIMIT :limit")


def page_sql(*, postgres: bool) -> str:
    """Up to :data:`PAGE` unrevoked agents past pk ``:after``, in pk order, as rows of :data:`_AGENT_TEXT`."""
    return (f"SELECT {_AGENT_TEXT.format(agg=_agg(postgres))} FROM agents a WHERE a.pk > :after AND NOT a.revoked "
            f"ORDER BY a.pk LIMIT {PAGE}")


@dataclass(frozen=True, slots=True)
class AgentText:
    pk: int
    name: str
    tags: str
    description: str
    org_id: str
    org_name: str
    skills: tuple[str, ...]

    @classmethod
    def from_row(cls, row: Iterable[object]) -> AgentText | None:
        """An agent from a row of :data:`_AGENT_TEXT`; None once revoked."""
        pk, revoked, name, tags, description, org_id, org_name, skills = row
        if revoked:
            return None
        return cls(int(pk), str(name), str(tags), str(description), str(org_id), str(org_name),  # type: ignore[call-overload]
                   tuple(str(skills or "").split()))

    def document(self) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_integer("pk", self.pk)
        for name in FIELDS:
            doc.add_text(name, getattr(self, name))
        for skill in self.skills:
            doc.add_text("skill", skill)
        doc.add_text("org_id", self.org_id)
        doc.add_text("org_name", self.org_name)
        return doc

    def passes(self, words: WordsQuery) -> bool:
        if words.skill is not None and words.skill not in self.skills:
            return False
        return words.org is None or words.org == (self.org_id if words.org_field == "org_id" else self.org_name)


@dataclass(frozen=True, slots=True)
class Pending:
    """An agent changed since the last commit: its text now (None: revoked), each field's tokens (to match and
    score it here), and whether the committed index may hold an older copy (to leave out of its hits)."""

    agent: AgentText | None
    counts: dict[str, Counter[str]]
    tokens: frozenset[str]
    known: bool


@dataclass(frozen=True, slots=True)
class WordsQuery:
    """The tokens every match must hold, and the exact filters."""

    tokens: tuple[str, ...]
    skill: str | None
    org: str | None

    @property
    def org_field(self) -> str:
        # a DID names one organisation; anything else is the name organisations call themselves (not unique)
        return "org_id" if self.org is not None and self.org.startswith("did:") else "org_name"


@dataclass(frozen=True, slots=True)
class _View:
    """What a search reads, swapped as one: the committed index and the changes since."""

    searcher: tantivy.Searcher
    pending: dict[int, Pending]


@lru_cache(maxsize=1)
def analyzer() -> tantivy.TextAnalyzer:
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.ascii_fold()).filter(tantivy.Filter.stemmer("english")).build())


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("pk", indexed=True, fast=True)
    for name in FIELDS:
        builder.add_text_field(name, tokenizer_name="words", index_option="freq")
    for name in ("skill", "org_id", "org_name"):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    return builder.build()


class WordIndex:
    """The agents added by :meth:`add` as they were at change ``position``, searchable once :meth:`open`; then
    :meth:`apply` moves it along the change feed, and :meth:`commit` (one caller at a time) makes the pending
    changes part of the tantivy index."""

    def __init__(self, position: int, *, postgres: bool) -> None:
        self.position = position
        self._changed = CHANGED_SQL[postgres]
        self._schema = _schema()
        self._index = tantivy.Index(self._schema)
        self._index.register_tokenizer("words", analyzer())
        self._index.config_reader("Manual", 0)  # the searcher changes only when a commit swaps the view
        self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
        self._lock = threading.Lock()
        self._docs = 0
        self._lengths = dict.fromkeys(FIELDS, 0)
        self._view: _View | None = None

    def add(self, agents: list[AgentText]) -> None:
        """Index ``agents`` (before :meth:`open`)."""
        for agent in agents:
            self._add(agent, {name: len(_TOKEN.findall(getattr(agent, name))) for name in FIELDS})

    def open(self) -> WordIndex:
        """Commit what :meth:`add` indexed and serve it."""
        self._writer.commit()
        self._index.reload()
        self._view = _View(self._index.searcher(), {})
        return self

    @property
    def _ready(self) -> _View:
        assert self._view is not None, "search a WordIndex once it is open"
        return self._view

    def _add(self, agent: AgentText, lengths: dict[str, int]) -> None:
        self._writer.add_document(agent.document())
        self._docs += 1
        for name, length in lengths.items():
            self._lengths[name] += length

    @property
    def count(self) -> int:
        """Agents indexed (pending changes included)."""
        view = self._ready
        stale = sum(1 for pk in view.pending if view.searcher.doc_freq("pk", pk))
        return int(view.searcher.num_docs) - stale + sum(1 for p in view.pending.values() if p.agent is not None)

    @property
    def pending(self) -> int:
        return len(self._ready.pending)

    @property
    def changed(self) -> TextClause:
        return self._changed

    def follow(self, start: int, end: int, rows: Sequence[Any]) -> bool:
        return self.apply(start, end, [(int(r[1]), AgentText.from_row(r[1:])) for r in rows])

    def apply(self, start: int, end: int, agents: Sequence[tuple[int, AgentText | None]]) -> bool:
        """Set each agent (pk, text now; None: revoked) pending and move from change ``start`` to ``end``. False,
        and nothing done, when another catch-up moved the index meanwhile (its reads may be newer than these)."""
        counted = [(pk, agent, self._counts(agent)) for pk, agent in agents]
        with self._lock:
            if self.position != start:
                return False
            if counted:
                view = self._ready
                # an older copy is committed, or will be by the commit under way (a pk pending now)
                changed = {pk: Pending(agent, counts, frozenset().union(*counts.values()),
                                       pk in view.pending or view.searcher.doc_freq("pk", pk) > 0)
                           for pk, agent, counts in counted}
                self._view = _View(view.searcher, {**view.pending, **changed})
            self.position = end
        return True

    @staticmethod
    def _counts(agent: AgentText | None) -> dict[str, Counter[str]]:
        if agent is None:
            return {}
        return {name: Counter(analyzer().analyze(getattr(agent, name))) for name in FIELDS}

    def commit(self) -> int:
        """Write the pending changes into the index and serve them from it; how many there were. The writer is
        this method's alone: callers take turns (the store's upkeep loop)."""
        committed = self._ready.pending
        if not committed:
            return 0
        for pk, change in committed.items():
            if change.known:
                self._writer.delete_documents_by_term("pk", pk)
            if change.agent is not None:
                self._add(change.agent, {name: sum(change.counts[name].values()) for name in FIELDS})
        self._writer.commit()
        self._index.reload()
        searcher = self._index.searcher()
        with self._lock:
            left = {pk: p for pk, p in self._ready.pending.items() if committed.get(pk) is not p}
            self._view = _View(searcher, left)
        return len(committed)

    def search(self, words: WordsQuery, count: int) -> list[int]:
        """The (up to) ``count`` best matches of ``words``: pks, best first (ties: tantivy's order, then pending
        agents)."""
        view = self._ready
        clauses = [(tantivy.Occur.Must, tantivy.Query.boolean_query([
            (tantivy.Occur.Should, tantivy.Query.boost_query(tantivy.Query.term_query(self._schema, name, token),
                                                             weight))
            for name, weight in FIELDS.items()])) for token in words.tokens]
        filters = [("skill", words.skill), (words.org_field, words.org)]
        clauses += [(tantivy.Occur.Must, tantivy.Query.const_score_query(
            tantivy.Query.term_query(self._schema, name, value), 0.0)) for name, value in filters if value is not None]
        query = clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)
        # pending agents' committed copies are left out of the hits, not out of the query: a MustNot clause would
        # stop block-max WAND from skipping (every match of a common word scored)
        stale = sum(1 for p in view.pending.values() if p.known)
        hits = view.searcher.search(query, count + stale, count=False).hits
        pks = view.searcher.fast_field_values("pk", [address for _, address in hits])
        ranked = [(float(score), int(pk)) for (score, _), pk in zip(hits, pks, strict=True)
                  if pk is not None and pk not in view.pending]
        matches = [(pk, p) for pk, p in view.pending.items()
                   if p.agent is not None and p.tokens.issuperset(words.tokens) and p.agent.passes(words)]
        if matches:
            idf = _Idf(view.searcher, max(self._docs, 1))
            ranked += [(self._score(idf, words.tokens, p), pk) for pk, p in matches]
            ranked.sort(key=lambda hit: -hit[0])  # stable: ties keep tantivy's order, pending agents after
        return [pk for _, pk in ranked[:count]]

    def _score(self, idf: _Idf, tokens: tuple[str, ...], pending: Pending) -> float:
        """BM25 as tantivy scores the query (the sum over tokens and fields of weight x idf x tf part), with the
        committed index's statistics."""
        score = 0.0
        for name, weight in FIELDS.items():
            counts = pending.counts[name]
            length = sum(counts.values())
            average = max(self._lengths[name] / idf.docs, 1e-6)
            for token in tokens:
                tf = counts.get(token, 0)
                if tf:
                    score += weight * idf(name, token) * (K1 + 1.0) * tf / (tf + K1 * (1.0 - B + B * length / average))
        return score


class _Idf:
    """BM25's idf of (field, token) in a searcher, each looked up once per search."""

    def __init__(self, searcher: tantivy.Searcher, docs: int) -> None:
        self.searcher = searcher
        self.docs = docs
        self._known: dict[tuple[str, str], float] = {}

    def __call__(self, name: str, token: str) -> float:
        idf = self._known.get((name, token))
        if idf is None:
            n = self.searcher.doc_freq(name, token)
            idf = self._known[name, token] = math.log(1.0 + (self.docs - n + 0.5) / (n + 0.5))
        return idf


def words_query(q: str, *, skill: str | None, org: str | None) -> WordsQuery | None:
    """The words of ``q`` (at most 16, as FTS5 is asked) as tokens, or None when it holds none (nothing can
    match)."""
    tokens = analyzer().analyze(" ".join(_WORD.findall(q)[:MAX_QUERY_WORDS]))
    return WordsQuery(tuple(dict.fromkeys(tokens)), skill, org) if tokens else None


def read_page(conn: Connection, *, postgres: bool, after: int) -> list[AgentText]:
    """Up to :data:`PAGE` unrevoked agents past pk ``after``, in pk order."""
    rows = conn.execute(PAGE_SQL[postgres], {"after": after}).all()
    return [agent for agent in map(AgentText.from_row, rows) if agent is not None]


PAGE_SQL = {postgres: text(page_sql(postgres=postgres)) for postgres in (False, True)}
CHANGED_SQL = {postgres: text(changed_sql(postgres=postgres)) for postgres in (False, True)}
