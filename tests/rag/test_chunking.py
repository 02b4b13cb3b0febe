from rag.ingest.chunking import Chunker, document_text
from rag.types import PageText
from tests.fakes import WordTokenizer

TOK = WordTokenizer()


def _pages(*texts, numbered=True):
    return [PageText(i + 1 if numbered else None, t) for i, t in enumerate(texts)]


def test_every_chunk_fits_the_window_and_offsets_point_at_its_text():
    para = " ".join(f"word{i}." for i in range(500))  # one paragraph far over the limit
    pages = _pages(para + "\n\n" + "short paragraph here.", "second page text " * 30)
    text, _ = document_text(pages)
    chunks = Chunker(TOK, max_tokens=50, overlap=10).chunk(pages, "doc")
    assert len(chunks) > 10
    for c in chunks:
        assert c.tokens <= 50
        assert TOK.count([c.text])[0] == c.tokens
        assert text[c.char_start : c.char_end] == c.text


def test_a_single_endless_sentence_is_cut_into_windows_not_truncated():
    words = [f"w{i}" for i in range(1000)]
    pages = _pages(" ".join(words))
    chunks = Chunker(TOK, max_tokens=64, overlap=8).chunk(pages, "doc")
    covered = " ".join(c.text for c in chunks).split()
    assert set(covered) == set(words)  # every word lands in some chunk
    assert all(c.tokens <= 64 for c in chunks)


def test_chunks_never_cross_pages_and_carry_their_page():
    pages = _pages("alpha beta gamma.", "delta epsilon.", "zeta eta theta.")
    chunks = Chunker(TOK, max_tokens=100, overlap=10).chunk(pages, "doc")
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 1), (2, 2), (3, 3)]
    assert "delta" in chunks[1].text and "alpha" not in chunks[1].text


def test_consecutive_chunks_overlap_by_whole_paragraphs():
    paragraphs = [f"Paragraph {i} says something about topic {i}." for i in range(20)]
    pages = _pages("\n\n".join(paragraphs), numbered=False)
    chunks = Chunker(TOK, max_tokens=40, overlap=12).chunk(pages, "doc")
    assert len(chunks) >= 4
    for a, b in zip(chunks, chunks[1:]):
        assert b.char_start < a.char_end, "the next chunk starts inside the previous one"
        assert b.char_start > a.char_start, "and still moves forward"


def test_ids_are_stable_and_derived_from_the_prefix_and_position():
    pages = _pages("one two three.\n\nfour five six.")
    a = Chunker(TOK, max_tokens=4, overlap=0).chunk(pages, "abc")
    b = Chunker(TOK, max_tokens=4, overlap=0).chunk(pages, "abc")
    assert [c.id for c in a] == [c.id for c in b] == [f"abc-{i:05d}" for i in range(len(a))]


def test_blank_pages_make_no_chunks():
    assert Chunker(TOK, max_tokens=20, overlap=2).chunk(_pages("", "   \n\n  "), "x") == []
