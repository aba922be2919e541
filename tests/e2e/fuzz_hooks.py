"""schemathesis hooks for the fuzzing run (``benchmarks/fuzz.py``, ``tests/e2e/test_fuzz.py``).

Random ``run_id`` strings only ever reach the "no such run" branch. The fuzz database holds two
runs, so three cases in four are pointed at one of them (two at the synthetic run, whose files
exist), with their ``idx`` brought into the range the runs have, steering edits' latents into
the synthetic run's 64 and edit values within the API's ±1e6 into ±1 (in the JSON bodies and
in ``_edits``): what a slider accepts depends on the run's data (a scale where the latent is
active, else within ±10x its largest activation), which no schema can state. A latent edited
twice keeps its first edit: the schema says "each latent at most once" only in words (JSON
Schema cannot make items unique by one field). That lets the generated
queries and bodies reach the pages, the steering engine and the explain route. schemathesis
notices the change and re-validates the case against the schema, so a case that was negative
only through a replaced value is then treated as a valid one. A form body's scalar for an array
field becomes the one-item list it is sent as (the two encode alike). The run choice is a
checksum of the generated case: the same seed gives the same cases.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

import schemathesis

from backend.routes.steer_models import EDITS_PATTERN

RUN_IDS = ("fixture", "steer-synthetic")
IDX_RANGE = 96  # past both runs' latents, items and users: some land on 404s
N_LATENTS = 64  # the synthetic run's


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    _form_scalars_as_lists(case)
    params: dict[str, Any] = case.path_parameters or {}
    if "run_id" not in params:
        return case
    pick = zlib.crc32(repr((sorted(params.items()), case.query, case.body)).encode()) % 4
    if pick != 3:
        new = {**params, "run_id": RUN_IDS[min(pick, 1)]}
        idx = params.get("idx")
        if _natural(idx):
            new["idx"] = idx % IDX_RANGE
        case.path_parameters = new
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("edits"), list):
        edits = [_edit(e) for e in body["edits"] if isinstance(e, dict)]
        if len(edits) == len(body["edits"]):
            case.body = {**body, "edits": _once_each(edits)}
    query = case.query or {}
    raw = query.get("_edits")
    if isinstance(raw, str) and raw and re.fullmatch(EDITS_PATTERN, raw):
        pairs = [_edit({"latent": int(a), "value": float(b)}) for a, b in _pairs(raw)]
        edits_q = ",".join(f"{e['latent']}:{e['value']:g}" for e in _once_each(pairs))
        case.query = {**query, "_edits": edits_q}
    return case


FORM = "application/x-www-form-urlencoded"


def _form_scalars_as_lists(case: schemathesis.Case) -> None:
    """In a form body a list of one (``pick=[3]``) and a scalar (``pick=3``) are the same bytes,
    ``pick=3``: the server cannot tell them apart, so a scalar generated for an array field is
    sent as the list it encodes as, and schemathesis judges the case as what the server gets."""
    body = case.body
    if case.media_type != FORM or not isinstance(body, dict):
        return
    form = _declared(case.operation)["requestBody"]["content"][FORM]["schema"]
    if "$ref" in form:
        components = case.operation.schema.raw_schema["components"]["schemas"]
        form = components[form["$ref"].rsplit("/", 1)[-1]]
    arrays = {k for k, v in form.get("properties", {}).items() if v.get("type") == "array"}
    scalars = {k for k in arrays if isinstance(body.get(k), int | float | str)}
    if scalars:
        case.body = {k: [v] if k in scalars else v for k, v in body.items()}


def _declared(operation: Any) -> dict[str, Any]:
    """The operation as the OpenAPI document declares it (its responses, its request body)."""
    return operation.schema.raw_schema["paths"][operation.path][operation.method.lower()]


def _pairs(raw: str) -> list[tuple[str, str]]:
    return [(p.partition(":")[0], p.partition(":")[2]) for p in raw.split(",")]


def _once_each(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each latent's first edit only: the schema says "each latent at most once" in words."""
    seen: set[Any] = set()
    kept = []
    for e in edits:
        key = e.get("latent")
        if not isinstance(key, int | float):  # not a latent: left for the server to refuse
            kept.append(e)
        elif key not in seen:
            kept.append(e)
            seen.add(key)
    return kept


def _edit(edit: dict[str, Any]) -> dict[str, Any]:
    """A latent the synthetic run has and a value every slider accepts: a scale is in
    [-10, 10] and an absolute activation within ±10x the latent's largest (>= 1 there); a value
    past the schema's ±1e6 stays, to be refused."""
    new = dict(edit)
    if _natural(edit.get("latent")):
        new["latent"] = edit["latent"] % N_LATENTS
    value = edit.get("value")
    if isinstance(value, float) and math.isfinite(value) and 1.0 < abs(value) <= 1e6:
        new["value"] = math.fmod(value, 1.0)
    return new


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@schemathesis.check
def explained_503(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A 503 passes only where the route documents it and the answer says why (a non-empty
    ``detail``): a bare 503 (a crash dressed up, a proxy's page) is a failure."""
    if response.status_code != 503:
        return None
    operation = case.operation
    documented = _declared(operation)
    assert "503" in documented.get("responses", {}), (
        f"503 is not documented on {operation.method.upper()} {operation.path}"
    )
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if detail is None:  # a page: error.html's <p class="detail">
        found = re.search(r'<p class="detail">([^<]*)</p>', response.text)
        detail = found.group(1) if found else None
    assert isinstance(detail, str) and detail.strip(), f"a 503 without a reason: {response.text!r}"
    return None
