"""Answer: a question becomes a cited answer.

`retrieval` (vector and keyword candidates from an `Index`, fused) -> `evidence` (the
sentences that answer, whether to refuse) -> `prompting` (numbered sources within the
model's budget) -> the model (`rag.llm`) -> `citations` (each claim checked against the
source it cites). `pipeline.Answerer` runs the whole stage and streams its events.
"""
