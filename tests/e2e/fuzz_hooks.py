"""schemathesis hooks for the fuzzing run (``benchmarks/fuzz.py``, ``tests/e2e/test_fuzz.py``).

Random ``run_id`` strings only ever reach the "no such run" branch. The fuzz database holds two
runs, so three cases in four are pointed at one of them (two at the synthetic run, whose files
exist), with their ``idx`` brought into the range the runs have, steering edits' latents into
the synthetic run's 64 and edit values past the API's ±1e6 into ±10. That lets the generated
queries and bodies reach the pages, the steering engine and the explain route. schemathesis
notices the change and re-validates the case against the schema, so a case that was negative
only through a replaced value is then treated as a valid one. The choice is a checksum of the
generated case: the same seed gives the same cases.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import schemathesis

RUN_IDS = ("fixture", "steer-synthetic")
IDX_RANGE = 96  # past both runs' latents, items and users: some land on 404s
N_LATENTS = 64  # the synthetic run's


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    params: dict[str, Any] = case.path_parameters or {}
    if "run_id" not in params:
        return case
    pick = zlib.crc32(repr((sorted(params.items()), case.query, case.body)).encode()) % 4
    if pick == 3:
        return case
    new = {**params, "run_id": RUN_IDS[min(pick, 1)]}
    idx = params.get("idx")
    if _natural(idx):
        new["idx"] = idx % IDX_RANGE
    case.path_parameters = new
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("edits"), list):
        edits = [_edit(e) for e in body["edits"] if isinstance(e, dict)]
        if len(edits) == len(body["edits"]):
            case.body = {**body, "edits": edits}
    return case


def _edit(edit: dict[str, Any]) -> dict[str, Any]:
    new = dict(edit)
    if _natural(edit.get("latent")):
        new["latent"] = edit["latent"] % N_LATENTS
    value = edit.get("value")
    if isinstance(value, float) and math.isfinite(value) and abs(value) > 1e6:
        new["value"] = math.fmod(value, 10.0)
    return new


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
