"""Citations: which sources an answer cites, and the passage that supports it."""

from __future__ import annotations

import random

import pytest

from rag.answer.citations import best_support, cited_numbers, content_stems, sentence_spans, stem

SOURCE = (
    "Northwind Traders was founded in 1998 in Oslo by two engineers. "
    "Revenue grew to 4.2 million dollars in 2023, mostly from exports.\n\n"
    "The chief executive is Kari Nordmann, who joined in 2015! "
    "Offices are located in Bergen and Tromsø. "
    "The company plans to open a warehouse in Trondheim next year."
)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("Revenue grew [1].", None, [1]),
        ("See [1, 2] and [3].", None, [1, 2, 3]),
        ("Both [1][3] say so; [1] again.", None, [1, 3]),
        ("Listed in [2; 4] and [Source 5].", None, [2, 4, 5]),
        ("Pages agree [2-4].", None, [2, 3, 4]),
        ("Out of range [7] and [0] and [2].", 3, [2]),
        ("Order of first citation [3] then [1] then [3].", None, [3, 1]),
        ("No citations here, only 1998 and (2).", None, []),
        ("Not a citation: [a], [], [1a].", None, []),
    ],
)
def test_cited_numbers(text, n, expected):
    assert cited_numbers(text, n) == expected


def test_cited_numbers_range_respects_n_sources():
    assert cited_numbers("[1-9]", 4) == [1, 2, 3, 4]


def test_stem_maps_word_families_together():
    assert stem("located") == stem("locations") == stem("locate")
    assert stem("offices") == stem("office")
    assert stem("companies") == stem("company")
    assert stem("planned") == stem("plans") == stem("plan")
    assert stem("4.2") == "4.2"
    assert stem("revenue") != stem("review")


@pytest.mark.parametrize(
    ("answer", "expected_fragment"),
    [
        ("Revenue reached 4.2 million in 2023 [1].", "Revenue grew to 4.2 million"),
        ("Kari Nordmann leads the company as chief executive.", "The chief executive is Kari"),
        ("It has offices in Bergen.", "Offices are located in Bergen"),
        ("A new warehouse is planned in Trondheim.", "warehouse in Trondheim"),
        ("It was founded in 1998.", "founded in 1998"),
    ],
)
def test_best_support_picks_the_supporting_sentence(answer, expected_fragment):
    start, end, text = best_support(answer, SOURCE)
    assert text == SOURCE[start:end]
    assert expected_fragment in text
    assert text == text.strip() and text
    # One sentence is enough for these answers: the passage should not run on.
    assert len(text) < 90


def test_best_support_without_overlap_returns_empty():
    assert best_support("Penguins eat krill.", SOURCE) == (0, 0, "")
    assert best_support("anything", "") == (0, 0, "")
    assert best_support("", SOURCE) == (0, 0, "")


def test_best_support_offsets_are_exact_on_random_text():
    rng = random.Random(7)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    for _ in range(200):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            body = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
            sentences.append(body.capitalize() + rng.choice([".", "!", "?", ".\n\n", ""]))
        source = rng.choice(["", "  ", "\n"]) + " ".join(sentences)
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        start, end, text = best_support(answer, source)
        assert 0 <= start <= end <= len(source)
        assert text == source[start:end]
        shares_a_word = bool(set(content_stems(text)) & set(content_stems(answer)))
        assert shares_a_word == bool(text)


def test_sentence_spans_cover_sentences_without_whitespace():
    text = "  First one. Second one!\n\nThird\n- item one\n- item two  "
    spans = sentence_spans(text)
    pieces = [text[a:b] for a, b in spans]
    assert pieces == ["First one.", "Second one!", "Third", "- item one", "- item two"]


def test_best_support_ignores_citation_markers_in_the_answer():
    # "[2]" must not make a sentence containing "2" win.
    source = "Section 2 covers fees. The warranty lasts three years."
    assert "warranty" in best_support("The warranty lasts three years [2].", source)[2]


# -- numbers in claims ------------------------------------------------------------------


@pytest.mark.parametrize(("claim", "passage", "agree"), [
    ("About 1000 people came.", "About 1,000 people came.", True),
    ("It cost 3.50 euros.", "It cost 3.5 euros.", True),
    ("It was in the 10th century.", "In the tenth century, 10th-century records...", True),
    ("Two engineers founded it.", "It was founded by 2 engineers.", True),
    ("The pressure was 142/88 mmHg.", "Blood Pressure: 142/88 mmHg (elevated).", True),
    # 142/88 is one figure: its halves, or another pair, are not it
    ("The pressure was 142 mmHg.", "Blood Pressure: 142/88 mmHg.", False),
    ("The pressure was 142/88 mmHg.", "Blood Pressure: 142/90 mmHg.", False),
    # a target or a limit is no measured value...
    ("The blood pressure was 130/80 mmHg.", "Blood Pressure: 142/88 mmHg. Target blood pressure: <130/80 mmHg.",
     False),
    # ...unless the claim speaks of the target too
    ("The target blood pressure is 130/80 mmHg.", "Target blood pressure: <130/80 mmHg.", True),
    ("The answer is: 2", "Enclave reads 13 file formats.", False),
    ("No figure here.", "Enclave reads 13 file formats.", True),
    ("The dose goes up to 20 mg.", "Increase Lisinopril from 10mg to 20mg once daily.", True),
    ("The dose goes up to 40 mg.", "Increase Lisinopril from 10mg to 20mg once daily.", False),
    ("Revenue was 4.2 million [1].", "Revenue grew to 4.2 million dollars.", True),  # [1] is no number
])
def test_the_numbers_of_a_claim_must_be_stated_as_values_in_its_passage(claim, passage, agree):
    from rag.answer.citations import numbers_agree

    assert numbers_agree(claim, passage) is agree


def test_a_column_read_under_a_range_heading_states_no_values():
    from rag.answer.citations import line_above, numbers_agree

    page = "Value\n\n142/88 mmHg\n78 bpm\n\nNormal Range\n\n120/80 mmHg\n60-100 bpm"
    column = page.index("120/80")
    assert line_above(page, column) == "Normal Range"
    assert not numbers_agree("The blood pressure was 120/80 mmHg.", "120/80 mmHg\n60-100 bpm", "Normal Range")
    assert numbers_agree("The blood pressure was 142/88 mmHg.", "142/88 mmHg\n78 bpm", "Value")
