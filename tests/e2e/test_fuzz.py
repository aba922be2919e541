"""Fuzzing in CI (issue 8 §7): schemathesis over the app's OpenAPI schema against a real uvicorn
server on a fixture database, with zero failures.

The run is ``benchmarks/fuzz.py``'s (its docstring says which checks run and why): the same
database, hooks, checks and seed, with a bounded number of examples per operation so the test
takes a minute or two. A failure is printed as route, check, status, why, and what was sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.serve import background_server
from benchmarks.fuzz import CHECKS, describe, fuzz, fuzz_database, summarise

# Random examples per operation (the CI budget): schemathesis' coverage phase adds its own
# deterministic cases for every operation whatever this is (~2,800 cases over 53 operations at 8).
MAX_EXAMPLES = 8


@pytest.mark.long
def test_fuzzing_the_api_finds_no_failures(tmp_path: Path) -> None:
    settings, headers = fuzz_database(tmp_path)
    with background_server(settings, timeout_s=180) as base:  # a busy machine starts slowly
        result = fuzz(base, headers, tmp_path, max_examples=MAX_EXAMPLES)
    assert result.errors == [], f"schemathesis could not test everything: {result.errors}"
    assert result.failures == [], "\n" + "\n".join(describe(f) for f in result.failures)
    # It fuzzed what matters, not only "no such run": every check ran on every operation's cases,
    # and the hooks' real runs got the steering engine and the pages to answer 200.
    assert result.operations >= 15 and result.cases >= 500, result.summary()
    for check in CHECKS:
        assert result.checks[check]["passed"] > 0, f"{check} never ran"
    for operation in (
        "POST /api/runs/{run_id}/users/{idx}/steer",
        "GET /runs/{run_id}/latents/{idx}.json",
        "GET /runs/{run_id}/users/{idx}.json",
    ):
        assert result.statuses[operation].get("200", 0) > 0, (operation, result.statuses)
    # Signed in, the explain route got past the account check (503: no LLM in this test);
    # anonymously, never.
    explain = "POST /api/runs/{run_id}/latents/{idx}/explain"
    assert result.statuses[explain].get("503", 0) > 0, result.statuses[explain]
    anonymous = result.statuses[f"anonymous {explain}"]
    assert anonymous.get("401", 0) > 0 and "503" not in anonymous and "200" not in anonymous


def test_the_fuzz_summary_counts_a_failed_check() -> None:
    """The summary the CI test trusts: a failed check in schemathesis' event stream is a failure,
    named by route, check and status."""
    case = {"method": "GET", "path": "/runs/{run_id}", "path_parameters": {"run_id": "x"}}
    event = {
        "ScenarioFinished": {
            "recorder": {
                "label": "GET /runs/{run_id}",
                "cases": {"c1": {"value": case}, "c2": {"value": case}},
                "checks": {
                    "c1": [{"name": "not_a_server_error", "status": "success"}],
                    "c2": [
                        {
                            "name": "not_a_server_error",
                            "status": "failure",
                            "failure_info": {
                                "failure": {"title": "Server error", "message": "Received 500"}
                            },
                        }
                    ],
                },
                "interactions": {
                    "c1": {"response": {"status_code": 404, "content": {"string": "{}"}}},
                    "c2": {"response": {"status_code": 500, "content": {"string": "boom"}}},
                },
            }
        }
    }
    report = {"operations": {"tested": 1}, "errors": []}
    result = summarise(report, [json.dumps(event), json.dumps({"EngineFinished": {}})])
    assert (result.cases, result.failed_cases) == (2, 1)
    assert result.checks["not_a_server_error"] == {"passed": 1, "failed": 1}
    assert result.statuses == {"GET /runs/{run_id}": {"404": 1, "500": 1}}
    [failure] = result.failures
    assert (failure["operation"], failure["check"], failure["status"]) == (
        "GET /runs/{run_id}",
        "not_a_server_error",
        500,
    )
    assert "boom" in describe(failure) and "Received 500" in describe(failure)


def test_a_form_scalar_for_an_array_field_is_judged_as_the_list_it_encodes_as() -> None:
    """``pick=0`` is what a form sends for the list ``[0]`` and for the scalar ``0``: the hook
    turns the scalar into the list, so schemathesis does not expect the server to refuse bytes
    that are a valid list (the CI failure: a 303 for ``pick: 0`` called schema-violating)."""
    import schemathesis

    from backend.app import create_app
    from tests.e2e.fuzz_hooks import FORM, _form_scalars_as_lists

    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operation = schema["/studies"]["POST"]
    sent = {"run_id": "x", "name": "n", "pick": 0, "latents": "3", "annotators": ""}
    case = operation.Case(body=dict(sent), media_type=FORM)
    _form_scalars_as_lists(case)
    assert case.body == {**sent, "pick": [0]}  # only the array field; strings stay strings
    as_json = operation.Case(body=dict(sent), media_type="application/json")
    _form_scalars_as_lists(as_json)
    assert as_json.body == sent  # JSON tells a scalar from a list: left to be refused
