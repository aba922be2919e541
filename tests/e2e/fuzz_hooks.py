"""schemathesis hooks for the fuzzing run (``benchmarks/fuzz.py``, ``tests/e2e/test_fuzz.py``).

Random ``run_id`` strings only ever reach the "no such run" branch; the fuzz database holds two
runs, so two cases in three are pointed at one of them (and their ``idx`` into the range the runs
have), which lets the generated queries and bodies reach the pages, the steering engine and the
explain route. schemathesis notices the change and re-validates the case against the schema, so a
case that was negative only through the replaced value is then treated as a valid one.
The choice is a checksum of the generated value: the same seed gives the same cases.
"""

from __future__ import annotations

import zlib
from typing import Any

import schemathesis

RUN_IDS = ("fixture", "steer-synthetic")
IDX_RANGE = 96  # past both runs' latents, items and users: some land on 404s


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    params: dict[str, Any] = case.path_parameters or {}
    if "run_id" not in params:
        return case
    pick = zlib.crc32(repr(sorted(params.items())).encode()) % 3
    if pick == 2:
        return case
    new = {**params, "run_id": RUN_IDS[pick]}
    idx = params.get("idx")
    if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0:
        new["idx"] = idx % IDX_RANGE
    case.path_parameters = new
    return case
