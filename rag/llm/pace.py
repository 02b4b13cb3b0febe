"""How fast a loaded model reads prompts and writes tokens on this machine, as measured.

Estimates shown before long model work (a map-reduce summary) start from these figures
when the model has answered before: a fixed guess was ten times too low on a busy CPU.
Kept per model object (the engine keeps one), never written to disk: a machine's load
changes from one session to the next.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

# A small model on a laptop CPU, for a model that has not run yet.
PROMPT_TOKENS_PER_S, TOKENS_PER_S = 250.0, 20.0
_WEIGHT = 0.5  # of the newest measurement: the machine's load changes


def _mix(old: float | None, new: float) -> float:
    return new if old is None else (1 - _WEIGHT) * old + _WEIGHT * new


@dataclass
class Pace:
    prompt_measured: float | None = None  # tokens/s, None until a call was long enough to time
    decode_measured: float | None = None

    @property
    def measured(self) -> bool:
        return self.prompt_measured is not None or self.decode_measured is not None

    @property
    def prompt_per_s(self) -> float:
        return self.prompt_measured or PROMPT_TOKENS_PER_S

    @property
    def decode_per_s(self) -> float:
        return self.decode_measured or TOKENS_PER_S

    def note(self, prompt_tokens: int, prompt_s: float, tokens: int, decode_s: float) -> None:
        """One call's figures: prompt tokens read before the first token came, and tokens
        written after it. Calls too short to time say nothing."""
        if prompt_tokens >= 64 and prompt_s > 0.01:
            self.prompt_measured = _mix(self.prompt_measured, prompt_tokens / prompt_s)
        if tokens >= 8 and decode_s > 0.01:
            self.decode_measured = _mix(self.decode_measured, tokens / decode_s)

    def seconds(self, prompt_tokens: float, tokens: float) -> float:
        return prompt_tokens / self.prompt_per_s + tokens / self.decode_per_s


_paces: "weakref.WeakKeyDictionary[object, Pace]" = weakref.WeakKeyDictionary()


def pace_of(model) -> Pace:
    try:
        return _paces.setdefault(model, Pace())
    except TypeError:  # an object that takes no weak reference: nothing remembered
        return Pace()


def record(model, started: float, first: float | None, end: float) -> None:
    """Note a finished `model.stream()` call, from its last_stats and three clock readings
    (perf_counter: the call, its first piece, its end); a call that wrote nothing says nothing."""
    if first is None:
        return
    stats = model.last_stats
    pace_of(model).note(stats.prompt_tokens - stats.reused_tokens, first - started,
                        stats.generated_tokens - 1, end - first)
