"""The answer pipeline with a fake generator: refusal, citation mapping, cancellation."""

from __future__ import annotations

from rag.answer import Answer, Answerer, retrieval_query
from rag.llm import StreamStats
from rag.types import Hit


class FakeGenerator:
    """Replays a scripted answer piece by piece; counts calls."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.calls = 0
        self.last_stats = StreamStats()
        self.context_size = 2048
        self.info = {"path": "fake.gguf", "gpu_layers": 0}

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None):
        self.calls += 1
        self.messages = messages

        def run():
            for n, piece in enumerate(self.pieces, 1):
                if should_stop and should_stop():
                    return
                self.last_stats.generated_tokens = n
                yield piece

        return run()


def hits(strength=0.8):
    return [
        Hit("a-1", "/docs/a.pdf", 3, "Paris is the capital of France. It lies on the Seine.", 0.03, strength),
        Hit("b-1", "/docs/b.txt", None, "Berlin is the capital of Germany.", 0.02, strength - 0.1),
    ]


def run(answerer, question="What is the capital of France?", **kw):
    pieces, final = [], None
    for event in answerer.ask(question, **kw):
        if isinstance(event, Answer):
            final = event
        else:
            pieces.append(event)
    return pieces, final


def test_weak_evidence_refuses_without_calling_the_model():
    gen = FakeGenerator(["never"])
    answerer = Answerer(lambda q, k: hits(strength=0.1), gen, threshold=0.3)
    pieces, answer = run(answerer)
    assert gen.calls == 0
    assert answer.refused and "could not find" in answer.text
    assert "a.pdf, page 3" in answer.text  # it names the closest sources it did find
    assert [s["path"] for s in answer.sources] == ["/docs/a.pdf", "/docs/b.txt"]
    assert all(not s["cited"] for s in answer.sources)


def test_only_cited_sources_are_listed_with_their_supporting_sentence():
    gen = FakeGenerator(["The capital ", "of France is Paris ", "[1]."])
    answerer = Answerer(lambda q, k: hits(), gen, threshold=0.3)
    pieces, answer = run(answerer)
    assert "".join(pieces) == "The capital of France is Paris [1]."
    assert not answer.refused and not answer.uncited
    assert [s["n"] for s in answer.sources] == [1]
    source = answer.sources[0]
    assert source["page"] == 3 and source["cited"]
    support = source["support"]
    assert support["text"] == source["text"][support["start"] : support["end"]]
    assert "Paris is the capital of France" in support["text"]
    assert answer.timings["tokens"] == 3 and answer.timings["first_token_ms"] is not None


def test_an_answer_without_citations_lists_the_given_sources_flagged():
    gen = FakeGenerator(["Paris."])
    _, answer = run(Answerer(lambda q, k: hits(), gen, threshold=0.3))
    assert answer.uncited and [s["n"] for s in answer.sources] == [1, 2]
    assert not any(s["cited"] for s in answer.sources)


def test_out_of_range_markers_are_not_citations():
    gen = FakeGenerator(["Paris [7]."])
    _, answer = run(Answerer(lambda q, k: hits(), gen, threshold=0.3))
    assert answer.uncited


def test_stopping_ends_the_stream_and_still_yields_an_answer():
    gen = FakeGenerator([f"w{i} " for i in range(100)])
    seen = []
    answerer = Answerer(lambda q, k: hits(), gen, threshold=0.3)
    final = None
    for event in answerer.ask("q", should_stop=lambda: len(seen) >= 3):
        if isinstance(event, Answer):
            final = event
        else:
            seen.append(event)
    assert len(seen) == 3 and final is not None and final.text == "w0 w1 w2"


def test_follow_ups_carry_the_previous_question_into_retrieval():
    asked = []
    gen = FakeGenerator(["ok [1]"])
    answerer = Answerer(lambda q, k: asked.append(q) or hits(), gen, threshold=0.3)
    history = [("Who founded the Norman dynasty?", "Rollo [1].")]
    run(answerer, "and who led it?", history=history)
    assert asked == ["Who founded the Norman dynasty? and who led it?"]
    assert retrieval_query("q", []) == "q"
    # the history reaches the prompt as turns
    assert any(m["role"] == "assistant" for m in gen.messages)
