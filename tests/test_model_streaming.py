"""Exactness: streaming is the batch computation in pieces; batching does not change results."""

import numpy as np
import pytest
import torch

from asr.decoding import greedy_decode
from asr.features import LogMel
from asr.model import AcousticModel, ModelConfig, average_checkpoints, widen_hidden, widen_lookahead
from asr.streaming import StreamingRecognizer
from asr.transcribe import batch_logits


def random_model(seed: int = 0, **kw) -> AcousticModel:
    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(hidden=64, layers=3, **kw)).eval()
    model.normalizer.set_stats(torch.randn(80) - 5, torch.rand(80) + 1)
    return model


def stream_in_chunks(recognizer: StreamingRecognizer, x: np.ndarray, rng) -> torch.Tensor:
    out, i = [], 0
    while i < len(x):
        n = int(rng.choice([0, 1, 37, 160, 479, 480, 481, 1600, 5000]))
        out.append(recognizer.accept_logits(x[i:i + n]))
        i += n
    return torch.cat(out) if out else torch.zeros(0, len(recognizer.model.config.vocab))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_streaming_logits_equal_batch(seed, lookahead):
    rng = np.random.default_rng(seed)
    model = random_model(seed, stack=int(rng.choice([1, 2, 3, 4])), lookahead=lookahead)
    x = (rng.standard_normal(int(rng.integers(0, 48000))) * 0.1).astype(np.float32)
    want = batch_logits(model, x)
    recognizer = StreamingRecognizer(model)
    streamed = stream_in_chunks(recognizer, x, rng)
    # with look-ahead, the last steps wait for a future that only the end of the utterance settles
    assert want.shape[0] - streamed.shape[0] == min(lookahead, want.shape[0])
    got = torch.cat([streamed, recognizer.flush_logits()])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert recognizer.finish().text == greedy_decode(want, model.config.vocab).text


def test_lookahead_sees_the_future_and_widening_keeps_the_function():
    model = random_model(4, lookahead=2)
    x = torch.randn(1, 60, 80) - 5
    later = x.clone()
    later[:, 45:] += 1.0  # change frames of steps 15.. (stack 3)
    a, b = model(x)[0], model(later)[0]
    assert torch.equal(a[0, :13], b[0, :13]) and not torch.allclose(a[0, 13], b[0, 13])  # 2 steps ahead, no more
    base = random_model(5)
    wide = widen_lookahead(base, 3)
    assert wide.config.lookahead == 3 and wide.input[0].in_features == 4 * base.input[0].in_features
    torch.testing.assert_close(wide(x)[0], base(x)[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shrink"):
        widen_lookahead(wide, 1)


def test_widening_the_hidden_layers_keeps_the_function_and_streams():
    base = random_model(6, stack=2)
    x = (np.random.default_rng(6).standard_normal(16000) * 0.1).astype(np.float32)
    want = batch_logits(base, x)
    wide = widen_hidden(base, 100, noise=0.0)  # 64 -> 100: some units copied twice or more
    assert wide.config.hidden == 100 and wide.rnn.weight_hh_l2.shape == (300, 100)
    assert wide.num_parameters() > 2 * base.num_parameters()
    torch.testing.assert_close(batch_logits(wide, x), want, atol=1e-5, rtol=0)
    recognizer = StreamingRecognizer(wide)
    streamed = torch.cat([stream_in_chunks(recognizer, x, np.random.default_rng(0)), recognizer.flush_logits()])
    torch.testing.assert_close(streamed, want, atol=1e-5, rtol=0)
    # the noise that lets fine-tuning tell copies apart moves the logits only a little
    noisy = batch_logits(widen_hidden(base, 100), x)
    assert not torch.equal(noisy, want) and (noisy - want).abs().max() < 0.1 * want.abs().max()
    with pytest.raises(ValueError, match="shrink"):
        widen_hidden(wide, 64)


def test_streaming_transcript_equals_batch_on_speech(overfit):
    model = overfit["model"]
    rng = np.random.default_rng(1)
    for wave, text in zip(overfit["waves"], overfit["texts"]):
        recognizer = StreamingRecognizer(model)
        torch.testing.assert_close(stream_in_chunks(recognizer, wave, rng), batch_logits(model, wave),
                                   atol=1e-5, rtol=0)
        assert recognizer.finish().text == text
        # reset() starts over: the same audio again gives the same result
        recognizer.reset()
        stream_in_chunks(recognizer, wave, rng)
        assert recognizer.finish().text == text


@pytest.mark.parametrize("lookahead", [0, 2])
def test_padding_invariance(lookahead):
    model = random_model(3, lookahead=lookahead)
    logmel = LogMel()
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (16000, 5000, 30000, 480)]
    alone = [model(logmel(torch.from_numpy(w))[None]) for w in waves]
    feats = [logmel(torch.from_numpy(w)) for w in waves]
    lengths = torch.tensor([f.shape[0] for f in feats])
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=3.0)
    with torch.no_grad():
        logits, out_lengths, state = model(padded, lengths)
        fast_logits, _, _ = model(padded, lengths, exact_final_state=False)  # the training path
    for i, n in enumerate(out_lengths.tolist()):
        torch.testing.assert_close(fast_logits[i, :n], logits[i, :n], atol=1e-5, rtol=0)
    for i, (a_logits, a_len, a_state) in enumerate(alone):
        n = int(out_lengths[i])
        assert n == a_len[0] == a_logits.shape[1]
        torch.testing.assert_close(logits[i, :n], a_logits[0].detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(state[:, i], a_state[:, 0].detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_streaming_memory_is_bounded(lookahead):
    model = random_model(1, lookahead=lookahead)
    recognizer = StreamingRecognizer(model)
    rng = np.random.default_rng(0)
    for _ in range(500):  # ~50 s of noise in 100 ms chunks
        recognizer.accept((rng.standard_normal(1600) * 0.1).astype(np.float32))
        assert recognizer._frames.shape[0] < model.config.stack * (1 + lookahead)
        assert recognizer.features._buffer.numel() < 560
        if lookahead == 0 or recognizer._state is not None:  # look-ahead: the first chunk completes no step
            assert recognizer._state.shape == (3, 1, 64)
    assert recognizer._state.shape == (3, 1, 64)


def test_checkpoint_roundtrip(tmp_path):
    model = random_model(5)
    path = tmp_path / "m.pt"
    model.save(path)
    raw = torch.load(path, weights_only=True)  # plain tensors and builtins only
    assert raw["config"]["vocab"] == model.config.vocab
    loaded = AcousticModel.load(path)
    torch.testing.assert_close(loaded.normalizer.mean, model.normalizer.mean)
    x = torch.randn(1, 90, 80)
    torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_average_checkpoints_is_the_mean_of_fine_tunes_of_one_model(tmp_path):
    from asr.apps.cli import main

    a = random_model(5)
    b = random_model(6)
    b.normalizer.set_stats(a.normalizer.mean, a.normalizer.std)  # "fine-tunes": same feature statistics
    a.save(tmp_path / "a.pt")
    torch.save({"model": b.checkpoint(), "optimizer": {}}, tmp_path / "last.pt")  # a training checkpoint
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "last.pt"), "-o", str(tmp_path / "soup.pt")]) == 0
    soup = AcousticModel.load(tmp_path / "soup.pt")
    for name, weight in soup.state_dict().items():
        torch.testing.assert_close(weight, (a.state_dict()[name] + b.state_dict()[name]) / 2)
    assert not torch.equal(soup.rnn.weight_hh_l0, a.rnn.weight_hh_l0)
    # models that are not fine-tunes of one model are refused, naming the file
    random_model(7).save(tmp_path / "other_stats.pt")
    AcousticModel(ModelConfig(hidden=32, layers=3)).save(tmp_path / "other_config.pt")
    with pytest.raises(ValueError, match="other_stats.pt: feature statistics"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "other_stats.pt"])
    with pytest.raises(SystemExit, match="other_config.pt: config differs"):
        main(["average", str(tmp_path / "a.pt"), str(tmp_path / "other_config.pt"), "-o", str(tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        AcousticModel.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        AcousticModel.load(tmp_path / "missing.pt")


def test_lstm_variant_streams_too():
    model = random_model(2, rnn="lstm")
    x = (np.random.default_rng(0).standard_normal(20000) * 0.1).astype(np.float32)
    got = stream_in_chunks(StreamingRecognizer(model), x, np.random.default_rng(1))
    torch.testing.assert_close(got, batch_logits(model, x), atol=1e-5, rtol=0)
