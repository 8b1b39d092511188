"""bounded_json refuses documents nested past the limit, whatever shortcut it takes for shallow ones."""

from __future__ import annotations

import json

import pytest

from guildnet.protocols import bounded_json


@pytest.mark.parametrize("as_text", [False, True])
def test_the_depth_limit_holds_at_its_edge(as_text: bool) -> None:
    def nested(depth: int) -> str:
        return "[" * (depth - 1) + '{"a": 1}' + "]" * (depth - 1)

    ok, deep = nested(5), nested(6)
    assert bounded_json.loads(ok if as_text else ok.encode(), max_depth=5) is not None
    with pytest.raises(bounded_json.TooDeep):
        bounded_json.loads(deep if as_text else deep.encode(), max_depth=5)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    document = {"text": "[{" * 300, "list": [[1], [2]]}
    assert bounded_json.loads(json.dumps(document).encode(), max_depth=5) == document
