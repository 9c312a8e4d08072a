"""Endpoint rules on synthetic CTC output, checked against the greedy decoder's own emissions."""

import pytest
import torch

from asr.decoding import GreedyDecoder
from asr.endpoint import EndpointConfig, Endpointer

VOCAB = ["_", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
SHIFT = 0.03


def logits_for(tokens: list[int]) -> torch.Tensor:
    """One-hot-ish logits whose argmax at each step is the given token."""
    out = torch.full((len(tokens), len(VOCAB)), -5.0)
    out[torch.arange(len(tokens)), torch.tensor(tokens, dtype=torch.long)] = 5.0
    return out


def steps(seconds: float) -> int:
    return round(seconds / SHIFT)


def test_rule2_fires_after_silence_following_speech():
    ep = Endpointer(EndpointConfig(silence=0.6, silence_no_speech=2.4, max_utterance=20), SHIFT)
    ep.accept(logits_for([0, 0, 5, 5, 0, 6]))  # "bc" emitted at steps 2 and 5
    assert ep.decoded and ep.endpoint() is None
    ep.accept(logits_for([0] * (steps(0.6) - 1)))
    assert ep.endpoint() is None  # one step short
    ep.accept(logits_for([0]))
    assert ep.endpoint() == "silence"
    assert ep.trailing_silence == pytest.approx(0.6)


def test_repeats_of_the_last_token_count_as_silence():
    """A model holding a token through silence adds nothing to the text: the utterance must still end."""
    ep = Endpointer(EndpointConfig(silence=0.3), SHIFT)
    ep.accept(logits_for([5] * 10))
    assert ep.endpoint() is None  # 9 steps after the emission at step 0
    ep.accept(logits_for([5]))
    assert ep.endpoint() == "silence"
    ep.reset()
    ep.accept(logits_for([5] * 5 + [0] + [5] * 5))  # blank between: a new emission at step 6
    assert ep.last_speech_step == 6 and ep.endpoint() is None


def test_rule1_needs_longer_silence_when_nothing_was_decoded():
    ep = Endpointer(EndpointConfig(silence=0.3, silence_no_speech=1.2), SHIFT)
    ep.accept(logits_for([0] * (steps(1.2) - 1)))
    assert not ep.decoded and ep.endpoint() is None  # rule 2's 0.3 s does not apply
    ep.accept(logits_for([0]))
    assert ep.endpoint() == "silence-no-speech"


def test_rule3_cuts_long_speech():
    ep = Endpointer(EndpointConfig(silence=0.3, silence_no_speech=1.2, max_utterance=3.0), SHIFT)
    talk = [5, 6] * (steps(3.0) // 2 - 1)  # a new character every step: never silent
    ep.accept(logits_for(talk))
    assert ep.endpoint() is None
    ep.accept(logits_for([5, 6]))
    assert ep.endpoint() == "max-utterance"
    ep.reset()
    assert ep.steps == 0 and not ep.decoded and ep.endpoint() is None


def test_emission_steps_match_greedy_decoder_over_chunks():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (300,), generator=g).tolist()  # many blanks, repeats and changes
    ep, dec = Endpointer(EndpointConfig(), SHIFT), GreedyDecoder(VOCAB)
    logits = logits_for(tokens)
    i = 0
    while i < len(tokens):
        n = int(torch.randint(0, 7, (1,), generator=g))
        ep.accept(logits[i:i + n])
        dec.accept(logits[i:i + n])
        assert ep.last_speech_step == (dec.frames[-1] if dec.frames else None)
        i += n
    assert ep.steps == len(tokens)


def test_config_rejects_non_positive_values():
    with pytest.raises(ValueError, match="silence"):
        EndpointConfig(silence=0)
    with pytest.raises(ValueError, match="max-utterance"):
        EndpointConfig(max_utterance=-1)
