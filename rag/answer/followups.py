"""Whether a question leans on the conversation before it.

"And in 2022?", "What about Oslo?", "Who approved it?" and "Why?" mean nothing alone: the
previous question supplies their topic, so it joins the search and the earlier turns go into
the prompt. "What is the CEO's salary?" names its own topic: asked after a question about
duck counts it must be answered (or refused) exactly as in a new conversation, or the duck
passages come back and a small model answers from them.

The rule reads the words of the question only (no model): it leans on history when

- it opens like a continuation: "and ...", "but ...", "also ...", "what about ...", "how
  about ...", "as for ...", "same for ...";
- it is very short (three words or fewer) and names nothing of its own (no capitalized name
  after the first word): "Why?", "In 2022?", "How much?";
- it refers back: a third-person pronoun ("it", "they", "his", ...) with no noun phrase
  before it in the question ("What did the company say about its profits?" has one), a
  demonstrative standing alone ("Why is that?", "Who wrote this?"), or a phrase that points
  at the conversation ("you said", "your answer", "the latter", "elaborate").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[\w']+")
_OPENERS = re.compile(
    r"^\W*(?:and|but|also|or|plus|then|so|what\s+about|how\s+about|what\s+of|as\s+for|same\s+for"
    r"|the\s+same\s+for|and\s+for|likewise)\b",
    re.IGNORECASE,
)
_POINTERS = re.compile(
    r"\b(?:you\s+(?:said|mentioned|meant|mean|wrote|just)|your\s+(?:answer|last|previous|reply)"
    r"|the\s+(?:former|latter|same\s+one|other\s+one|previous\s+one|last\s+one|one\s+above)"
    r"|(?:mentioned|said|listed)\s+(?:above|before|earlier)|elaborate|tell\s+me\s+more|more\s+details?"
    r"|explain\s+(?:further|more)|go\s+on|continue)\b",
    re.IGNORECASE,
)
_PRONOUNS = frozenset("it its itself they them their theirs themselves he him his himself she her hers herself".split())
_DEMONSTRATIVES = frozenset("this that these those".split())
# After a demonstrative, words that show it stands for something said before ("that is", "this
# means"), rather than introducing a clause ("so that", "the file that lists").
_STANDS_ALONE = frozenset(
    "is was are were 's does did do mean means meant say says said cost costs one ones happen happened "
    "apply applies work works".split()
)
# Words that make a noun phrase follow: what comes after them can be what a pronoun refers to.
_DETERMINERS = frozenset("the a an this that these those my our your each every any some no".split())
# "it" with nothing to refer to: "is it possible to", "how long does it take to".
_DUMMY_IT = re.compile(
    r"\bit\s+(?:is|was|'s)?\s*(?:possible|true|necessary|required|allowed|ok|okay|safe|better|best|easy|hard|"
    r"difficult|important|likely|worth|free)\b|\b(?:does|did|will|would)\s+it\s+take\b|\bis\s+it\s+to\b",
    re.IGNORECASE,
)
SHORT_WORDS = 3


def needs_history(question: str) -> bool:
    """True when `question` cannot be understood without the turn before it."""
    text = question.strip()
    words = _WORD.findall(text)
    if not words:
        return False
    if _OPENERS.match(text) or _POINTERS.search(text):
        return True
    if len(words) <= SHORT_WORDS and not any(w[0].isupper() for w in words[1:]):
        return True
    lower = [w.lower() for w in words]
    for i, word in enumerate(lower):
        if word in _PRONOUNS:
            if word in ("it", "its") and _DUMMY_IT.search(text):
                continue
            if not _noun_phrase_before(words, i):
                return True
        elif word in _DEMONSTRATIVES:
            following = lower[i + 1] if i + 1 < len(lower) else None
            if (following is None or following in _STANDS_ALONE) and not _noun_phrase_before(words, i):
                return True
    return False


def history_for(question: str, history: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
    """The earlier turns a question is answered with: all of them for a follow-up, none for a
    question that stands alone (it is answered as in a new conversation)."""
    return history if history and needs_history(question) else ()


def _noun_phrase_before(words: list[str], at: int) -> bool:
    """Whether something a pronoun at `at` could refer to comes before it: a name (a capitalized
    word past the first), a number, or a word after a determiner ("the company", "a report")."""
    for j in range(at):
        word = words[j]
        if j > 0 and (word[0].isupper() or word[0].isdigit()) and not re.match(r"i(?:'|$)", word.lower()):
            return True
        if word.lower() in _DETERMINERS and j + 1 < at:
            return True
    return False
