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


@dataclass
class Pace:
    prompt_per_s: float = PROMPT_TOKENS_PER_S
    decode_per_s: float = TOKENS_PER_S
    measured: bool = False

    def note(self, prompt_tokens: int, prompt_s: float, tokens: int, decode_s: float) -> None:
        """One call's figures: prompt tokens read before the first token came, and tokens
        written after it. Calls too short to time say nothing."""
        if prompt_tokens >= 64 and prompt_s > 0.01:
            self.prompt_per_s = self._mix(self.prompt_per_s, prompt_tokens / prompt_s)
        if tokens >= 8 and decode_s > 0.01:
            self.decode_per_s = self._mix(self.decode_per_s, tokens / decode_s)

    def _mix(self, old: float, new: float) -> float:
        first, self.measured = not self.measured, True
        return new if first else (1 - _WEIGHT) * old + _WEIGHT * new

    def seconds(self, prompt_tokens: float, tokens: float) -> float:
        return prompt_tokens / self.prompt_per_s + tokens / self.decode_per_s


_paces: "weakref.WeakKeyDictionary[object, Pace]" = weakref.WeakKeyDictionary()


def pace_of(model) -> Pace:
    try:
        return _paces.setdefault(model, Pace())
    except TypeError:  # an object that takes no weak reference: nothing remembered
        return Pace()
