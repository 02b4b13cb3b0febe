"""Ending an answer that repeats itself, without showing half of the repeat.

Greedy decoding makes a small model loop: once a sentence or a list item has come out, the
likeliest continuation is often the same sentence again, up to the token cap ("1. You can add
documents to the list of documents. 2. You can add documents to the list of documents. ...").
Every streaming loop (`rag.llm.llama`, `rag.llm.remote`) passes its text through one
`RepetitionGuard`, which ends the answer at the first repeat:

- a repeated unit: a line or sentence whose words (list numbers, bullets and citation marks
  aside) are those of an earlier one, at least `MIN_UNIT_WORDS` of them, or that an earlier
  one holds whole, at least `MIN_CLAUSE_WORDS` of them;
- a repeated run: the last words repeat the words just before them ("the list of documents
  to the list of documents to the list of ..."), at least `MIN_RUN_WORDS` words in all.

Text that may be the start of a repeat is held back until it is known not to be, so what the
guard lets through never ends with part of a repeat, and a loop costs no more than the words
it takes to recognise it. Plain Python: about 15 µs a token on the 2-core development machine
under load, beside the 2 to 20 µs of the streaming loop itself.
"""

from __future__ import annotations

import re

MIN_UNIT_WORDS = 3  # a unit this long said twice is a loop ("Yes. Yes." is not worth a rule)
MIN_CLAUSE_WORDS = 6  # a unit this long that an earlier one holds whole is a loop too
MIN_RUN_WORDS = 8  # a run of at least this many words repeating the words before them
MAX_PERIOD = 48  # the longest repeated run (in words) looked for
_RUN_NEEDED = [max(period, MIN_RUN_WORDS) for period in range(MAX_PERIOD + 1)]  # one whole copy at least

# A line break ends a unit; so does a sentence's end once the next sentence begins (citation
# marks after the full stop stay with the sentence they follow).
_UNIT_END = re.compile(r"\n|[.!?][\"'\u201d\u2019)\]]*(?:[ \t]*\[[\d\s,;\-\u2013]{1,20}\])*(?=[ \t]+[^\s\[])")
# What opens a line without saying anything: bullets, list numbers, heading marks, citations.
_LEAD = re.compile(r"^(?:\s*(?:[-*\u2022+>#]+|\d{1,3}[.)]|\(?[a-zA-Z]\)|\[[\d\s,;\-\u2013]+\]))+\s*")
_CITATIONS = re.compile(r"\[[\d\s,;\-\u2013]+\]")
_WORD = re.compile(r"\w+")
# A unit begun with no word yet: it may still be a list number or a bullet of a repeat.
_NOTHING_YET = re.compile(r"^\s*(?:[-*\u2022+>#]+|\d{1,3}[.)]?|\(?[a-zA-Z]\)?|\[[\d\s,;\-\u2013]*\]?)?\s*$")
_SENTENCE_AFTER = re.compile(r"[\"'\u201d\u2019)\]]*[.!?][\"'\u201d\u2019)\]]*")  # a sentence ends here
_LEADS_ON = ",;:-\u2013\u2014*\u2022"  # what joins a word to the next; never the end of an answer
# Words after which a cut leaves a sentence hanging ("... the list of").
_HANGING = frozenset(
    "a an the of to in on at by for from with and or but nor as that which who whom whose is are was were be "
    "been has have had do does did can could will would should may might must not no this these those its "
    "their his her our your my than then so if".split()
)


def unit_key(text: str) -> str:
    """The words of a line or sentence, lower case, without what opens a list item or a
    heading and without citation marks: two units with the same key say the same thing."""
    text = _CITATIONS.sub(" ", _LEAD.sub("", text))
    return " ".join(w.lower() for w in _WORD.findall(text))


class RepetitionGuard:
    """Feed it the answer's text as it streams; it returns what may be shown now.

    `feed(piece)` returns the text that is safe to show (possibly ""); once `stopped` is
    true the answer has started repeating itself: the caller ends generation, and
    everything shown so far is the answer, ending where the first repeat began. `finish()`
    returns what was held back when the answer ends on its own.
    """

    def __init__(self) -> None:
        self.text = ""
        self.stopped = False
        self._shown = 0  # characters of `text` returned so far
        self._units: list[str] = []  # keys of the finished units
        self._unit_start = 0  # where the unit being written begins
        self._scan = 0  # where to look for the next unit end
        self._words: list[str] = []
        self._word_ends: list[int] = []
        self._word_starts: list[int] = []
        self._word_scan = 0
        self._runs = [0] * (MAX_PERIOD + 1)  # runs[L]: trailing words equal to the word L before

    def feed(self, piece: str) -> str:
        if self.stopped or not piece:
            return ""
        self.text += piece
        cut = self._read_units()
        if cut is None:
            cut = self._read_words()
        if cut is not None:
            self.stopped = True
            return self._release(_clean_end(self.text, cut, self._shown))
        return self._release(self._safe_end())

    def finish(self) -> str:
        """The rest of the text when the answer ends: all of it, unless its last unit says
        an earlier one again (it had no next sentence to close it)."""
        if self.stopped:
            return ""
        key = unit_key(self.text[self._unit_start:])
        if self._said_before(key):
            self.stopped = True
            return self._release(_clean_end(self.text, self._unit_start, self._shown))
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        if end <= self._shown:
            return ""
        out, self._shown = self.text[self._shown:end], end
        return out

    # -- units ------------------------------------------------------------------------

    def _read_units(self) -> int | None:
        """Close the units the text has finished; the offset to cut at when one repeats."""
        text = self.text
        while True:
            match = _UNIT_END.search(text, self._scan)
            if match is None:
                return None
            self._scan = match.end()
            key = unit_key(text[self._unit_start:match.end()])
            if not key:  # a bullet or a number alone: it belongs to the unit that follows
                continue
            if self._said_before(key):
                return self._unit_start
            self._units.append(key)
            self._unit_start = match.end()

    def _said_before(self, key: str) -> bool:
        """Whether a finished unit says again what an earlier one said: the same words, or
        (when long enough) words an earlier unit holds whole ("You can choose to add
        documents." after "In the dialog, you can choose to add documents.")."""
        size = len(key.split())
        if size >= MIN_CLAUSE_WORDS:
            return any(f" {key} " in f" {unit} " for unit in self._units)
        return size >= MIN_UNIT_WORDS and key in self._units

    def _open_unit_may_repeat(self) -> bool:
        """Whether the unit being written may still turn out to be an earlier one again."""
        open_text = self.text[self._unit_start:]
        if _NOTHING_YET.match(open_text):
            return bool(self._units)
        key = unit_key(open_text)
        if not key:
            return bool(self._units)
        # It may be starting to say an earlier unit again, or a clause of one (a last word
        # still being written matches as the start of the earlier word).
        return any(f" {key}" in f" {unit}" for unit in self._units)

    # -- runs of words -----------------------------------------------------------------

    def _read_words(self) -> int | None:
        """Take in the words the text has finished; the offset to cut at when a run repeats."""
        text = self.text
        for match in _WORD.finditer(text, self._word_scan):
            if match.end() == len(text):
                break  # the word may go on in the next piece
            self._word_scan = match.end()
            words, runs = self._words, self._runs
            words.append(match.group().lower())
            self._word_starts.append(match.start())
            self._word_ends.append(match.end())
            n = len(words) - 1
            word = words[n]
            for period in range(1, min(MAX_PERIOD, n) + 1):
                if word == words[n - period]:
                    runs[period] += 1
                    if runs[period] >= _RUN_NEEDED[period]:
                        return self._run_cut(period, runs[period])
                else:
                    runs[period] = 0
        return None

    def _run_cut(self, period: int, run: int) -> int:
        """Where to end text whose last `run` words repeat the `period` words before them.

        After one whole copy; but a loop has no true first word ("the list of documents to
        the list of documents" loops on either), so the copy kept may be shifted into the
        next one: to end a sentence where one ends within a copy, else by less than half
        a copy so as not to leave it hanging on a word like "of"."""
        first = len(self._words) - run  # the first word of the second copy
        for shift in range(period):
            last = first + shift - 1  # the last word kept
            end = _SENTENCE_AFTER.match(self.text, self._word_ends[last])
            if end:
                return end.end()
        for shift in range((period + 1) // 2):
            last = first + shift - 1
            if self._words[last] not in _HANGING:
                return self._word_ends[last]
        return self._word_ends[first - 1]

    def _safe_end(self) -> int:
        """The end of the text that cannot be part of a repeat found later."""
        end = len(self.text)
        if self._open_unit_may_repeat():
            end = self._unit_start
        longest = max(self._runs)
        if longest:
            start = self._word_starts[len(self._words) - longest]
            end = min(end, start)
        # An unfinished last word may still extend a run: hold it too.
        if self._word_scan < len(self.text):
            tail = _WORD.search(self.text, self._word_scan)
            if tail is not None and tail.end() == len(self.text):
                end = min(end, tail.start())
        # The space or comma before held text is held with it, so a cut never leaves it behind.
        while end > self._shown and (self.text[end - 1].isspace() or self.text[end - 1] in _LEADS_ON):
            end -= 1
        return end


def _clean_end(text: str, cut: int, shown: int) -> int:
    """`cut`, moved back over the spaces, commas and list marks that led into the repeat."""
    end = cut
    while end > shown:
        ch = text[end - 1]
        if ch.isspace() or ch in _LEADS_ON:
            end -= 1
            continue
        # A list number left dangling ("...documents.\n2.") goes too.
        line_start = text.rfind("\n", 0, end) + 1
        if line_start >= shown and _NOTHING_YET.match(text[line_start:end]) and text[line_start:end].strip():
            end = line_start
            continue
        break
    return end
