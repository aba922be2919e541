"""The home page and its JSON twin show each pipeline's progress from its progress file
(docs/architecture.md, progress): stage k of n, elapsed, what is left, why a run failed, and
whether its first version is published yet."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from core.progress import ProgressTracker, Step
from core.settings import Settings

PLAN = [Step(stage=s) for s in ("prepare", "train_recommender", "probe")] + [
    Step(stage="publish", part="TF-IDF concepts"),
    Step(stage="explain_llm", part="LLM labels"),
    Step(stage="publish", part="LLM labels"),
]


@pytest.fixture
def client(published: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(published)) as c:
        yield c


def test_a_running_pipeline_shows_its_stage_and_what_is_left(
    client: TestClient, published: Settings
) -> None:
    t = ProgressTracker(published.data_dir, "ml-latest-small-sasrec", PLAN)
    t.estimate("probe", 30.0)  # the steps after it have no estimate: none is shown
    t.end("prepare", 0.0, skipped=True)
    t.end("train_recommender", 0.0, skipped=True)
    t.begin("probe")
    t.progress.started_at = t.progress.step_started_at = time.time() - 65  # 65 s ago
    t.begin("probe")
    body = client.get("/index.json").json()
    (p,) = body["progress"]
    assert (p["run_id"], p["state"], p["stage"], p["k"], p["n"]) == (
        "ml-latest-small-sasrec", "running", "probe", 3, 6,
    )  # fmt: skip
    assert 65 <= p["elapsed_s"] < 90 and p["estimated_remaining_s"] is None
    assert p["remaining"] == ["publish (TF-IDF concepts)", "explain_llm (LLM labels)",
                              "publish (LLM labels)"]  # fmt: skip
    assert p["published_version"] is None
    assert [r["id"] for r in body["runs"]] == ["fixture"]

    html = client.get("/").text
    item = re.search(r'<li data-progress-run="ml-latest-small-sasrec".*?</li>', html, re.S)
    assert item is not None, html
    li = item.group(0)
    assert 'data-state="running"' in li and "stage 3 of 6" in li and "probe" in li
    assert re.search(r"elapsed <span data-elapsed=\S+>1 min \d s</span>", li)
    assert 'role="status"' in html
    assert (
        '<progress max="6" value="2" aria-label="ml-latest-small-sasrec: 2 of 6 stages done">' in li
    )
    assert "time left not known yet" in li and "not published yet" in li
    assert "publish (TF-IDF concepts) → explain_llm (LLM labels) → publish (LLM labels)" in li
    assert "progress.js" in html  # the poll, only while something runs


def test_a_failed_run_says_why_and_a_published_one_links_its_version(
    client: TestClient, published: Settings
) -> None:
    failed = ProgressTracker(published.data_dir, "ml-latest-small-bprmf", PLAN)
    failed.begin("prepare")
    failed.fail("DataFormatError: ratings.csv row 7: rating 'x' is not a number")
    llm = ProgressTracker(published.data_dir, "fixture", PLAN)
    for stage in ("prepare", "train_recommender", "probe", "publish"):
        llm.end(stage, 1.0)
    llm.begin("explain_llm")
    done = ProgressTracker(published.data_dir, "finished-run", PLAN[:1])
    done.begin("prepare")
    done.end("prepare", 1.0)

    progress = {p["run_id"]: p for p in client.get("/index.json").json()["progress"]}
    assert set(progress) == {"ml-latest-small-bprmf", "fixture"}  # a finished one is not shown
    assert progress["ml-latest-small-bprmf"]["state"] == "failed"
    assert progress["fixture"]["published_version"] == 1
    html = client.get("/").text
    bprmf = re.search(r'<li data-progress-run="ml-latest-small-bprmf".*?</li>', html, re.S)
    assert bprmf is not None
    assert "failed</strong> at stage 1 of 6, prepare" in bprmf.group(0)
    assert "ratings.csv row 7: rating &#39;x&#39; is not a number" in bprmf.group(0)
    fixture = re.search(r'<li data-progress-run="fixture".*?</li>', html, re.S)
    assert fixture is not None
    assert 'stage 5 of 6: <span class="stage">explain_llm (LLM labels)</span>' in fixture.group(0)
    assert 'version 1 is published: <a href="/runs/fixture">' in fixture.group(0)


def test_without_progress_files_the_page_is_as_before(
    client: TestClient, published: Settings
) -> None:
    body = client.get("/index.json").json()
    assert body["progress"] == []
    html = client.get("/").text
    assert "runs-live" in html and "progress.js" not in html and "Pipelines" not in html
