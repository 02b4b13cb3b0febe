from rag.llm.pace import PROMPT_TOKENS_PER_S, TOKENS_PER_S, Pace


def test_each_figure_starts_from_its_own_first_measurement_then_follows_the_load():
    pace = Pace()
    assert not pace.measured and (pace.prompt_per_s, pace.decode_per_s) == (PROMPT_TOKENS_PER_S, TOKENS_PER_S)
    pace.note(1000, 2.0, 4, 1.0)  # 500 prompt tokens/s; 4 tokens are too few to time decoding
    assert pace.measured and pace.prompt_per_s == 500 and pace.decode_per_s == TOKENS_PER_S
    pace.note(10, 2.0, 100, 1.0)  # decoding's first figure replaces the guess, not half of it
    assert pace.decode_per_s == 100 and pace.prompt_per_s == 500
    pace.note(1000, 4.0, 100, 2.0)
    assert (pace.prompt_per_s, pace.decode_per_s) == (375, 75)
    assert pace.seconds(750, 150) == 4.0
