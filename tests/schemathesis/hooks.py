"""Schemathesis hooks for the Bindery run (loaded through SCHEMATHESIS_HOOKS=hooks).

`GET /v2/Events?After=N&Wait=S` long-polls: when nothing lies after position N it holds the
request for up to min(S, 30) seconds. Generated `After` values are usually past the end of the
log, so most requests with a large `Wait` would just sleep, and a run of thousands of requests
would spend its time waiting. When the generated `Wait` is an integer above 1, `After` is set to
0, which the seeded log always answers at once: `Wait` is still sent exactly as generated (so its
parsing, clamping and overflow are exercised), and waiting itself is still exercised by every
request whose `Wait` is 0 or 1.
"""

from __future__ import annotations

import os

import schemathesis


def _as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/v2/Events" or not isinstance(case.query, dict):
        return
    wait = _as_int(case.query.get("Wait"))
    if wait is not None and wait > 1 and "After" in case.query:
        case.query["After"] = 0
