"""The repetition guard every streaming loop passes its text through: an answer that starts
repeating itself ends before the repeat, and nothing shown is part of one."""

from __future__ import annotations

import pytest

from rag.llm.repetition import RepetitionGuard, unit_key

# What the bundled model answered to the Welcome collection's own question before the guard.
WELCOME_LOOP = "To add documents:\n\n" + "".join(
    f"{i}. You can choose to add documents to the list of documents.\n" for i in range(1, 25))


def stream(text: str, step: int) -> tuple[list[str], RepetitionGuard]:
    guard, shown = RepetitionGuard(), []
    for i in range(0, len(text), step):
        shown.append(guard.feed(text[i:i + step]))
        if guard.stopped:
            break
    shown.append(guard.finish())
    return [s for s in shown if s], guard


@pytest.mark.parametrize("step", [1, 2, 5, 11])
@pytest.mark.parametrize("text, expected", [
    (WELCOME_LOOP, "To add documents:\n\n1. You can choose to add documents to the list of documents."),
    # A phrase looping inside one sentence: one copy is kept, not ending on "of".
    ("You can add documents to the list of documents to the list of documents to the list of documents to the",
     "You can add documents to the list of documents"),
    ("Documents, " + "documents, " * 10 + "documents",
     "Documents"),
    # Two sentences taking turns: the first one said again ends the answer.
    ("The fee is 20 euros [1]. It is paid once [1]. The fee is 20 euros [2]. It is paid once [2]. The fee",
     "The fee is 20 euros [1]. It is paid once [1]."),
    # What the bundled model still wrote once each item differed: a clause said again whole.
    ("1. Click the Add documents button.\n2. In the dialog, you can choose to add documents to the list of "
     "documents.\n3. You can choose to add documents to the list of documents.\n4. You can",
     "1. Click the Add documents button.\n2. In the dialog, you can choose to add documents to the list of "
     "documents."),
    # A loop spanning two sentences ends where a sentence ends, not mid-clause.
    ("The theorem is used to define the classes. The time hierarchy theorem is a fundamental theorem that "
     "is used to define the classes.\n\nThe time hierarchy theorem is a fundamental theorem that is used to",
     "The theorem is used to define the classes. The time hierarchy theorem is a fundamental theorem that "
     "is used to define the classes."),
    ("The answer is: The answer is: The answer is: The answer is: The answer is: The answer is: The",
     "The answer is"),
    # The last sentence repeats an earlier one and nothing follows it.
    ("Paris is the capital of France [1]. It lies on the Seine [1]. Paris is the capital of France [2].",
     "Paris is the capital of France [1]. It lies on the Seine [1]."),
])
def test_a_repeat_ends_the_answer_before_it_begins(text, expected, step):
    shown, guard = stream(text, step)
    assert guard.stopped
    assert "".join(shown) == expected


@pytest.mark.parametrize("step", [1, 3, 7])
@pytest.mark.parametrize("text", [
    "Drag files onto the window [1]. You can also use the Add files button [1].",
    "The blood pressure was 142/88 mmHg [1]. The target is 130/80 [1].",
    "Revenue rose to 3.5 million in 2019 [1]. Revenue rose to 4.1 million in 2020 [1].",
    "- Name: Jane Doe\n- Date: not stated\n- Amount: not stated\n",
    "Yes. Yes.",  # too short to be a loop worth a rule
    "The the results were clear: the committee approved the plan, and the board approved the plan too.",
])
def test_an_answer_that_does_not_repeat_itself_comes_out_whole(text, step):
    shown, guard = stream(text, step)
    assert not guard.stopped
    assert "".join(shown) == text


def test_text_that_may_start_a_repeat_is_held_back_until_it_does_not():
    guard = RepetitionGuard()
    assert guard.feed("You can add files. ") == "You can add files."
    # The start of the same sentence again is held, not shown...
    assert guard.feed("You can add ") == ""
    # ...and shown once it says something else.
    assert guard.feed("folders too. ") == " You can add folders too."


def test_a_list_number_left_before_the_repeat_is_not_shown():
    shown, _ = stream("Steps:\n1. Open the Add files dialog.\n2. Open the Add files dialog.\n3.", 4)
    assert "".join(shown) == "Steps:\n1. Open the Add files dialog."


def test_units_with_the_same_words_match_whatever_their_numbering_and_citations():
    assert unit_key("12. You **can** add documents [3].") == unit_key("- you can add documents") \
        == "you can add documents"
    assert unit_key("## 3.") == ""
