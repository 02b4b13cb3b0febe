"""The engine runs in its own process and receives every job pickled: a job that cannot be
pickled fails there with "Something went wrong inside Enclave" (opening a PDF citation did)."""

from __future__ import annotations

import pickle

from desktop import jobs


def test_the_jobs_a_citation_click_sends_can_be_pickled():
    for job in (jobs.page_words("abc:0"), jobs.document_text("/tmp/x.txt"), jobs.messages(1)):
        assert pickle.loads(pickle.dumps(job)).func is job.func
