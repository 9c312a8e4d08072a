"""Beam searches in worker processes (asr.search_pool): the same results as in-process decoders, and a
dead worker costs only the streams it served."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.decoding import BeamSearchDecoder
from asr.search_pool import SearchError, SearchPool
from asr.tokenizer import DEFAULT_VOCAB
from asr.training.lm import build_arpa
from conftest import SENTENCES, one_hot_logits

VOCAB = list(DEFAULT_VOCAB)


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    build_arpa(SENTENCES, path, 2)
    return str(path)


def noisy_logits(text: str, seed: int) -> torch.Tensor:
    """A spelled utterance with noise, so the search has real choices to make."""
    rng = np.random.default_rng(seed)
    ids = [0]
    for c in text:
        ids += [VOCAB.index(c), VOCAB.index(c), 0]
    clean = one_hot_logits(ids)
    return clean + torch.from_numpy(rng.normal(0, 7.0, clean.shape).astype(np.float32))


def test_pool_searches_equal_local_decoders_and_survive_a_dead_worker(lm):
    texts = SENTENCES[:4]
    logits = [noisy_logits(t, i) for i, t in enumerate(texts)]
    local = BeamSearchDecoder(VOCAB, lm, beam_size=16)
    want = [local.decode(x).text for x in logits]
    partial_want = []
    for x in logits:
        local.reset()
        local.accept(x[:7])
        partial_want.append(local.text)
    pool = SearchPool(VOCAB, lm, beam_size=16, processes=2)
    try:
        assert pool.beam_size == 16
        searches = [pool.open() for _ in texts]
        assert {s.worker for s in searches} == {0, 1}
        for s, x in zip(searches, logits):
            s.accept(x[:7])
        pool.run(searches)
        assert [s.text for s in searches] == partial_want
        for start in range(7, max(x.shape[0] for x in logits), 5):  # pieces, all streams per exchange
            for s, x in zip(searches, logits):
                s.accept(x[start:start + 5])
            pool.run(searches)
        assert [s.hypothesis().text for s in searches] == want
        for s in searches:  # the next utterance of each stream
            s.reset()
        for s, x in zip(searches, reversed(logits)):
            s.accept(x)
        assert [s.hypothesis().text for s in searches] == want[::-1]

        pool.workers[1].process.kill()
        pool.workers[1].process.join()
        for s in searches:
            s.reset()
            s.accept(logits[0])
        with pytest.raises(SearchError):
            pool.run(searches)
        assert pool.workers[1].process.is_alive()  # restarted
        with pytest.raises(SearchError):  # a search that lived in the dead process stays failed
            searches[1].hypothesis()
        fresh = pool.open(), pool.open()
        for s in fresh:
            s.accept(logits[2])
        assert [s.hypothesis().text for s in fresh] == [want[2]] * 2
    finally:
        pool.close()
    assert not any(w.process.is_alive() for w in pool.workers)


def test_a_bad_lm_fails_at_start(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an lm\n")
    with pytest.raises(ValueError):
        SearchPool(VOCAB, str(bad), processes=1)
