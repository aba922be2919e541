"""benchmarks/fuzz.py counts a 503 as a failure unless the route documents it and the answer
says why (``tests/e2e/fuzz_hooks.py``'s ``explained_503``)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.fuzz import CHECKS
from tests.e2e.fuzz_hooks import explained_503


def _case(documented: tuple[str, ...]) -> Any:
    responses = {code: {"description": "x"} for code in documented}
    raw = {"paths": {"/runs/{run_id}": {"get": {"responses": responses}}}}
    operation = SimpleNamespace(
        path="/runs/{run_id}", method="GET", schema=SimpleNamespace(raw_schema=raw)
    )
    return SimpleNamespace(operation=operation)


def _response(status: int, body: str) -> Any:
    return SimpleNamespace(status_code=status, text=body, json=lambda: json.loads(body))


def test_a_503_counts_only_when_documented_and_explained() -> None:
    assert "explained_503" in CHECKS
    why = json.dumps({"detail": "The database is not answering ..."})
    assert explained_503(None, _response(503, why), _case(("200", "503"))) is None
    assert explained_503(None, _response(200, "{}"), _case(("200",))) is None
    with pytest.raises(AssertionError, match="not documented"):
        explained_503(None, _response(503, why), _case(("200",)))
    for bare in (json.dumps({"detail": ""}), "Service Unavailable", json.dumps({"x": 1})):
        with pytest.raises(AssertionError, match="without a reason"):
            explained_503(None, _response(503, bare), _case(("200", "503")))
    page = '<section class="error"><p class="detail">The run\'s files are missing</p></section>'
    assert explained_503(None, _response(503, page), _case(("200", "503"))) is None
