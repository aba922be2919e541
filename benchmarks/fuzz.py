"""Fuzz the explorer's API: schemathesis over its OpenAPI schema against a real uvicorn server.

    .venv/bin/python benchmarks/fuzz.py [--max-examples 25] [--seed 8]

The server (``backend.serve.background_server``) serves a fixture database holding two runs:
the factory run ``fixture`` (its artifact directory does not exist, so everything that needs the
vectors answers 503) and a small synthetic run with real artifacts (``steer-synthetic``), so
steering and the user pages do real work. Path parameters named ``run_id`` are pointed at the
two runs in two cases of three (``tests/e2e/fuzz_hooks.py``), random strings otherwise.

Two passes: every operation with an admin's session cookie and CSRF token, so the writes are
fuzzed past sign-in (all but /logout, which would end that session halfway through); then every
POST anonymously, with a fifth of the examples, where writes must answer a documented 401.

Checks, chosen for what the explorer promises (issue 8 §4, "one error shape everywhere"):

- ``not_a_server_error``: no input gives a 5xx, save a 503 that ``explained_503`` accepts;
- ``explained_503`` (``tests/e2e/fuzz_hooks.py``): a 503 passes only where the route documents
  it and the answer says why (a non-empty ``detail``, or error.html's message on a page);
- ``status_code_conformance``: every status a route answers is documented in the schema;
- ``content_type_conformance``: the Content-Type is the documented one (JSON, or HTML pages);
- ``response_schema_conformance``: every body matches its documented schema, errors included
  (``{"detail": str, "errors"?: [...]}``);
- ``response_headers_conformance``: documented headers (``Retry-After`` on 429) are sent;
- ``negative_data_rejection``: input that breaks the schema (a bool for an int, an id out of
  range) is refused with a 4xx, never processed;
- ``unsupported_method``: a method a path does not declare answers 405;
- ``allow_header_conformance``: OPTIONS names exactly the methods the schema declares;
- ``positive_data_acceptance``: input valid under the schema is accepted (2xx, a redirect), or
  refused only for what the data decides and the schema cannot know: 401/403 (who asks), 404
  (an unknown run, latent, study or account), 409 (a name taken, a closed study), 503 (a run
  without its files, no LLM configured). A 400/422 on valid input means the schema does not
  state a constraint the server enforces (docs/architecture.md, "Text, names and errors").

Left out: the stateful checks
(``use_after_free``, ``ensure_resource_availability``: the API has no create/delete links) and
``ignored_auth`` (sign-in is a cookie, not a security scheme in the schema).

Prints each distinct failure (route, check, status, why, what was sent and received), then as
the LAST line one JSON object: ``cases``, ``failures`` (cases with a failed check),
``failure_classes`` (distinct route/check/status/message), per-check counts (``checks``), the
statuses each operation answered, the operations tested and the seconds taken.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.settings import Settings  # noqa: E402

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "positive_data_acceptance",
    "explained_503",  # tests/e2e/fuzz_hooks.py
)
RUN_IDS = ("fixture", "steer-synthetic")
HOOKS = "tests.e2e.fuzz_hooks"
PASSWORD = "fuzzing password, not a secret"  # of the throw-away admin account
CONFIG_REPORT_EVENTS = ("schemathesis.toml", "schemathesis.json", "events.ndjson")
# The factory run has no artifact directory: its 503 ("the run's files are missing") is the
# documented answer, not a crash; explained_503 checks that it is documented and says why.
# No cache: a run never replays crashes remembered from an earlier one (the same seed, the same
# cases).
CONFIG = """
[cache]
enabled = false

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "503"]

# Naming an account that does not exist answers 400 (core/studies.py: "no account 'x'; an admin
# adds it"): which names exist is data, like which runs do.
[[operations]]
include-path-regex = '^/studies(/[{]study_id[}]/annotators)?$'
include-method = "POST"

[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "503"]
"""


@dataclass
class FuzzResult:
    cases: int
    failures: list[dict[str, Any]]  # one per distinct (operation, check, status, message)
    failed_cases: int = 0
    checks: dict[str, dict[str, int]] = field(default_factory=dict)
    operations: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # schemathesis' own errors (not failures)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # operation -> status -> n

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "failures": self.failed_cases,  # cases with a failed check
            "failure_classes": len(self.failures),
            "errors": len(self.errors),
            "operations": self.operations,
            "checks": self.checks,
            "statuses": self.statuses,
            "seconds": round(self.seconds, 1),
        }

    def add(self, other: FuzzResult, label: str) -> None:
        """Fold another pass in; its failures and statuses are named with ``label``."""
        self.cases += other.cases
        self.failed_cases += other.failed_cases
        self.failures += [{**f, "operation": f"{label} {f['operation']}"} for f in other.failures]
        for name, counts in other.checks.items():
            mine = self.checks.setdefault(name, {"passed": 0, "failed": 0})
            for key, n in counts.items():
                mine[key] += n
        self.seconds += other.seconds
        self.errors += other.errors
        self.statuses.update({f"{label} {op}": codes for op, codes in other.statuses.items()})


def fuzz_database(data_dir: Path) -> tuple[Settings, dict[str, str]]:
    """A migrated SQLite DB with the two runs, and the headers of a signed-in admin."""
    from backend.auth import CSRF_HEADER, SESSION_COOKIE
    from core import accounts
    from core.store import migrate
    from core.store.engine import session_factory
    from tests.backend.factories import publish_fixture
    from tests.backend.synthetic_run import make_run

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    publish_fixture(sessions)
    make_run(data_dir, sessions, RUN_IDS[1], n_items=300, n_users=40, d=16, n_latents=64, k=4)
    admin = accounts.create_account(sessions, "schemathesis-admin", PASSWORD, "admin")
    token, login = accounts.start_session(sessions, admin.id, timedelta(hours=2))
    return settings, {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: login.csrf_token}


def run_schemathesis(
    base_url: str,
    headers: dict[str, str],
    work_dir: Path,
    max_examples: int = 25,
    seed: int = 8,
    filters: tuple[str, ...] = (),
    timeout_s: float = 600,
) -> FuzzResult:
    """``schemathesis run`` on ``base_url``'s schema, in a subprocess (its CLI is the stable,
    documented interface); the counts come from its JSON report and its NDJSON event stream.
    ``filters`` are its operation filters, e.g. ``("--exclude-path", "/logout")``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config, report, events = (work_dir / n for n in CONFIG_REPORT_EVENTS)
    config.write_text(CONFIG)
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
        f"{base_url}/openapi.json", "--checks", ",".join(CHECKS),
        "--max-examples", str(max_examples), "--seed", str(seed), "--workers", "1",
        "--no-color", "--report", "json,ndjson", "--report-json-path", str(report),
        "--report-ndjson-path", str(events), "--generation-database", "none",
        "--request-timeout", "30",
    ]  # fmt: skip
    cmd += filters
    for name, value in headers.items():
        cmd += ["--header", f"{name}: {value}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=work_dir, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if not report.is_file() or not events.is_file():
        raise RuntimeError(
            f"schemathesis wrote no report (exit {proc.returncode}):\n{proc.stdout[-4000:]}"
            f"\n{proc.stderr[-4000:]}"
        )
    summary = json.loads(report.read_text())
    if not summary.get("operations"):  # schemathesis stopped before testing (its output says why)
        raise RuntimeError(
            f"schemathesis tested nothing (exit {proc.returncode}):\n{proc.stdout[-4000:]}"
            f"\n{proc.stderr[-4000:]}"
        )
    result = summarise(summary, events.read_text().splitlines())
    result.seconds = time.perf_counter() - started
    return result


def fuzz(base_url: str, headers: dict[str, str], work_dir: Path, max_examples: int = 25,
         seed: int = 8) -> FuzzResult:  # fmt: skip
    """Two passes: every operation signed in as an admin (but /logout, which would end the
    session halfway through), then the writes (POST) anonymously, with a fifth of the examples:
    they must answer a documented 401/403, never run."""
    result = run_schemathesis(
        base_url, headers, work_dir / "signed-in", max_examples, seed,
        ("--exclude-path", "/logout"),
    )  # fmt: skip
    anonymous = run_schemathesis(
        base_url, {}, work_dir / "anonymous", max(1, max_examples // 5), seed,
        ("--include-method", "POST"),
    )  # fmt: skip
    result.add(anonymous, "anonymous")
    return result


def summarise(report: dict[str, Any], events: list[str]) -> FuzzResult:
    """Cases, per-check counts and the distinct failures (operation, check, status, message)."""
    checks: dict[str, dict[str, int]] = {name: {"passed": 0, "failed": 0} for name in CHECKS}
    seen_cases: set[str] = set()
    failed_cases = 0
    statuses: dict[str, dict[str, int]] = {}
    failures: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for line in events:
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or "checks" not in finished.get("recorder", {}):
            continue
        recorder = finished["recorder"]
        for case_id, results in recorder["checks"].items():
            if case_id in seen_cases:
                continue
            seen_cases.add(case_id)
            case = recorder["cases"][case_id]["value"]
            response = recorder.get("interactions", {}).get(case_id, {}).get("response") or {}
            operation = f"{case['method']} {case['path']}"
            if operation != recorder["label"] and recorder["label"] != "Stateful tests":
                operation = "undeclared methods"  # unsupported_method's probes
            answered = statuses.setdefault(operation, {})
            code = str(response.get("status_code", "none"))
            answered[code] = answered.get(code, 0) + 1
            failed_cases += any(check["status"] != "success" for check in results)
            for check in results:
                counts = checks.setdefault(check["name"], {"passed": 0, "failed": 0})
                ok = check["status"] == "success"
                counts["passed" if ok else "failed"] += 1
                if not ok:
                    failure = _failure(recorder, case_id, check)
                    first_line = (failure["message"].splitlines() or [""])[0]
                    key = (failure["operation"], failure["check"], failure["status"], first_line)
                    failures.setdefault(key, failure)
    return FuzzResult(
        cases=len(seen_cases),
        failures=list(failures.values()),
        failed_cases=failed_cases,
        checks=checks,
        operations=report["operations"]["tested"],
        errors=[json.dumps(e)[:500] for e in report.get("errors", [])],
        statuses={op: dict(sorted(codes.items())) for op, codes in sorted(statuses.items())},
    )


def _failure(recorder: dict[str, Any], case_id: str, check: dict[str, Any]) -> dict[str, Any]:
    """One failed check as the report shows it: what was sent, what came back, and why."""
    info = check.get("failure_info", {}).get("failure", {})
    case = recorder["cases"][case_id]["value"]
    response = recorder.get("interactions", {}).get(case_id, {}).get("response") or {}
    content = response.get("content") or {}
    body = content.get("string")
    if body is None and "$base64" in content:
        body = base64.b64decode(content["$base64"]).decode("utf-8", "replace")
    sent = {k: case[k] for k in ("path_parameters", "query", "body") if k in case}
    return {  # a stateful step's label is "Stateful tests": name the operation itself
        "operation": f"{case['method']} {case['path']}",
        "check": check["name"],
        "status": response.get("status_code", 0),
        "title": info.get("title", ""),
        "message": info.get("message", ""),
        "request": sent,
        "response": (body or "")[:300],
    }


def describe(failure: dict[str, Any]) -> str:
    """One failure on a few lines: route, check, status, why, what was sent and received."""
    why = " / ".join(line for line in failure["message"].splitlines() if line.strip())[:300]
    return (
        f"FAIL {failure['operation']} [{failure['check']}] -> {failure['status']}: "
        f"{failure['title']}: {why}\n  sent {json.dumps(failure['request'])[:300]}"
        f"\n  got {failure['response'][:200]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    from backend.serve import background_server

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        settings, headers = fuzz_database(Path(tmp))
        with background_server(settings, timeout_s=180) as base:  # a busy machine starts slowly
            result = fuzz(base, headers, Path(tmp), args.max_examples, args.seed)
    for failure in result.failures:
        print(describe(failure))
    for error in result.errors:
        print(f"ERROR (schemathesis could not test): {error}")
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
