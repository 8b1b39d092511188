"""Search SQL: one statement per shape of query (skill, text, organisation, liveness), paged by cursor.

Text search is ranked by the process's word index (:mod:`.words`) once it is built; the statements here rank it
while the index is built, or when a liveness filter leaves the index's matches short. They rank within a window of
:data:`RANK_WINDOW` matches (SQLite: the most recently registered;
PostgreSQL: the first the index yields): a word common to 12k of 100k agents took ~90 ms to rank in full, and
more words narrow a query below the window. Skill and listing queries walk an index in order and stop at the
page: O(limit), not O(matches).

Every page statement also returns the change-feed position (:data:`POSITION`, one column after the record's):
the page and its position come from one statement, so from one snapshot and one round trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, bindparam, text

from .results import LIVENESS_JOIN, QUERY_INT_MAX, RECORD_COLUMNS, BadQuery

MAX_LIMIT = 100
RANK_WINDOW = 300
"""Matches ranked per text query. Ranking reads each one: on SQLite bm25 costs ~1 µs a match, on PostgreSQL
``ts_rank`` reads the match's row, a random heap page (~5-10 µs when not cached). At 1M agents a window of 1,000
cost 1.2 ms (SQLite) and 10 ms (PostgreSQL) of a rare word's search; 300 keeps both within the 5 ms goal."""
POSITION = "(SELECT max(seq) FROM changes)"
"""The change-feed position, as a column of a page's statement (evaluated once per statement)."""
SKILL_FILTER = "a.pk IN (SELECT s.agent_pk FROM agent_skills s WHERE s.skill_id = :skill)"
_EXPIRES_AT = "(SELECT lv.expires_at FROM agent_liveness lv WHERE lv.agent_pk = a.pk)"
_WORD = re.compile(r"\w+", re.UNICODE)


def encode_cursor(value: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, key: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadQuery("cursor is not one this registry issued") from exc
    if not isinstance(value, dict) or not isinstance(value.get(key), int) or not 0 <= value[key] <= QUERY_INT_MAX:
        raise BadQuery("cursor is not one this registry issued (or belongs to another kind of query)")
    return int(value[key])


def fts5_query(q: str) -> str | None:
    """The words of ``q`` (at most 16) as quoted FTS5 terms: user text never reaches FTS5's query syntax."""
    words = _WORD.findall(q)[:16]
    return " ".join(f'"{w}"' for w in words) if words else None


@lru_cache(maxsize=256)
def cached_text(sql: str) -> TextClause:
    """Search SQL varies only by which filters are present: a few dozen shapes, each built once."""
    return text(sql)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One page's statement and parameters; ``ranked`` pages continue by offset, others by primary key (the
    last column of each row)."""

    statement: TextClause
    params: dict[str, Any]
    ranked: bool

    def next_cursor(self, rows: list[Any], limit: int) -> str:
        if self.ranked:
            return encode_cursor({"o": self.params["offset"] + limit})
        return encode_cursor({"k": int(rows[-1][-1])})


def filters(*, postgres: bool, now: float, skill: str | None, org: str | None,
            live: bool | None) -> tuple[list[str], dict[str, Any]]:
    """The WHERE conditions (on ``agents a``) and parameters of the filters every search shape shares."""
    where = ["a.revoked = false" if postgres else "a.revoked = 0"]
    params: dict[str, Any] = {"now": now}
    if skill:
        where.append(SKILL_FILTER)
        params["skill"] = skill
    if org:
        # a DID names one organisation; anything else is the name organisations call themselves (not unique)
        where.append("a.org_id = :org" if org.startswith("did:") else "a.org_name = :org")
        params["org"] = org
    if live is not None:
        where.append(live_filter(live))
    return where, params


def live_filter(live: bool) -> str:
    return f"{_EXPIRES_AT} > :now" if live else f"{_EXPIRES_AT} <= :now"


def allowed_sql(where: list[str], *, postgres: bool) -> TextClause:
    """Which of the pks ``:pks`` the conditions ``where`` allow: one indexed lookup per pk (EXISTS, not IN
    (SELECT ...), which may read every agent of the skill)."""
    exists = "EXISTS (SELECT 1 FROM agent_skills s WHERE s.skill_id = :skill AND s.agent_pk = a.pk)"
    conditions = [w if w != SKILL_FILTER else exists for w in where]
    among = "a.pk = ANY(:pks)" if postgres else "a.pk IN :pks"
    allowed = cached_text(f"SELECT a.pk FROM agents a WHERE {among} AND {' AND '.join(conditions)}")
    return allowed if postgres else allowed.bindparams(bindparam("pks", expanding=True))


def text_ranked_sql(*, postgres: bool, where: list[str], records: bool) -> str:
    """Matches of the words in ``:q``, best first, ``:limit`` from ``:offset``: their records
    (:data:`RECORD_COLUMNS`), or with ``records`` False their primary keys alone.

    The page is cut before any record column is read: facts, signatures and domain marks are read for the page's
    rows, not for every ranked match."""
    if postgres:
        # No ORDER BY in the window: a scan can then stop after :window rows instead of visiting every match
        # (a word common to 12k agents cost ~80 ms with ORDER BY pk DESC). The rank is computed on the row the
        # scan read (not on a second visit of each match's row).
        ranked = ("SELECT pk, -ts_rank(search, plainto_tsquery('english', :q)) AS score FROM agents "
                  "WHERE search @@ plainto_tsquery('english', :q) AND NOT revoked LIMIT :window")
    else:
        # Rank inside the FTS index: revoked agents are removed from the index.
        ranked = ("SELECT rowid AS pk, bm25(agents_fts, 10.0, 5.0, 1.0) AS score FROM agents_fts "
                  "WHERE agents_fts MATCH :q ORDER BY rowid DESC LIMIT :window")
    if len(where) > 1:
        # The skill/org/live filters read the window's rows (~6 us each), after it is cut: applied inside it, a
        # rare word with a skill read every match of both (367 ms at 1M agents on PostgreSQL).
        ranked = f"SELECT a.pk, m.score FROM ({ranked}) m JOIN agents a ON a.pk = m.pk WHERE {' AND '.join(where)}"
    page = f"SELECT pk, score FROM ({ranked}) r ORDER BY score, pk LIMIT :limit OFFSET :offset"
    if not records:
        return f"SELECT top.pk FROM ({page}) top ORDER BY top.score, top.pk"
    return (f"SELECT {RECORD_COLUMNS}, {POSITION} FROM ({page}) top JOIN agents a ON a.pk = top.pk {LIVENESS_JOIN} "
            "ORDER BY top.score, top.pk")


def text_params(*, postgres: bool, q: str, fts: str) -> dict[str, Any]:
    return {"q": q if postgres else fts, "window": RANK_WINDOW}


def build_search(*, postgres: bool, now: float, skill: str | None, q: str | None, org: str | None,
                 live: bool | None, limit: int, cursor: str | None) -> SearchQuery | None:
    """The statement for one page of matches (``limit + 1`` rows, to tell whether more follow), or None when
    ``q`` holds no word at all (nothing can match)."""
    check_limit(limit)
    where, params = filters(postgres=postgres, now=now, skill=skill, org=org, live=live)
    params["limit"] = limit + 1
    fts = fts5_query(q) if q else None
    if q and fts is None:
        return None
    if q and fts is not None:
        params["offset"] = decode_cursor(cursor, "o") if cursor else 0
        params.update(text_params(postgres=postgres, q=q, fts=fts))
        sql = text_ranked_sql(postgres=postgres, where=where, records=True)
        return SearchQuery(cached_text(sql), params, ranked=True)
    params["after"] = decode_cursor(cursor, "k") if cursor else 0
    if skill:
        # Walk the (skill_id, agent_pk) index in order and stop at the page.
        where[where.index(SKILL_FILTER)] = "s.skill_id = :skill"
        sql = (f"SELECT {RECORD_COLUMNS}, {POSITION}, a.pk FROM agent_skills s JOIN agents a ON a.pk = s.agent_pk "
               f"{LIVENESS_JOIN} "
               f"WHERE {' AND '.join(where)} AND s.agent_pk > :after ORDER BY s.agent_pk LIMIT :limit")
    else:
        where.append("a.pk > :after")
        sql = (f"SELECT {RECORD_COLUMNS}, {POSITION}, a.pk FROM agents a {LIVENESS_JOIN} WHERE {' AND '.join(where)} "
               "ORDER BY a.pk LIMIT :limit")
    return SearchQuery(cached_text(sql), params, ranked=False)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
