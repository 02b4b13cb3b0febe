"""One verdict on whether the sources support an answer, for every place that shows it.

The CLI (`ask`, its `--json`) and the window (its "No source supports this answer" banner)
both read the claims the answer stage checked (`Answer.claims`) through this one function,
on the answer's JSON, so they cannot disagree. Nothing here imports anything: the window
process reads it without loading the engine.
"""

from __future__ import annotations


def supported(answer: dict) -> bool | None:
    """Whether a source supports the answer (`Answer.to_json()`, or a stored chat message of it):
    True when a checked claim is supported; False when the claims were checked and none is,
    or the answer said nothing to check (only citations); None when nothing was checked (a
    refusal, a stopped answer)."""
    checked = answer.get("claims_checked", answer.get("checked", "claims" in answer))
    if answer.get("refused") or not checked:
        return None
    return any(claim.get("supported") for claim in answer.get("claims") or [])
