"""W3C trace context as the node reads and writes it."""

from __future__ import annotations

import pytest

from guildnet.node.tracing import child_traceparent, new_traceparent, trace_id


def test_a_child_span_keeps_the_trace_and_changes_the_span() -> None:
    parent = new_traceparent()
    child = child_traceparent(parent)
    assert trace_id(child) == trace_id(parent) and child.split("-")[2] != parent.split("-")[2]
    assert parent.startswith("00-") and parent.endswith("-01") and len(parent) == 55


@pytest.mark.parametrize("bad", [
    None, "", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # all-zero trace id
    "ff-" + "a" * 32 + "-" + "1" * 16 + "-01",                        # version ff is invalid
    "00-" + "A" * 32 + "-" + "1" * 16 + "-01",                        # upper-case hex
    "00-" + "a" * 31 + "-" + "1" * 16 + "-01",
])
def test_malformed_headers_carry_no_trace_and_start_a_fresh_one(bad: str | None) -> None:
    assert trace_id(bad) is None
    fresh = child_traceparent(bad or "")
    assert trace_id(fresh) is not None and trace_id(fresh) != trace_id(child_traceparent(bad or ""))
