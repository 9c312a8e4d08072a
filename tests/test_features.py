import numpy as np
import pytest
import torch

from asr.features import HOP, WINDOW, LogMel, StreamingLogMel, batch_lengths, num_frames


def chunked(x: np.ndarray, sizes: list[int]):
    i = 0
    for n in sizes:
        yield x[i:i + n]
        i += n
    yield x[i:]


@pytest.mark.parametrize("seed", range(5))
def test_streaming_features_equal_batch(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(rng.integers(0, 20000))).astype(np.float32) * 0.1
    sizes = list(rng.choice([0, 1, 37, 159, 160, 161, 399, 400, 401, 1234], size=200))
    logmel = LogMel()
    stream = StreamingLogMel(logmel)
    got = torch.cat([stream.accept(torch.from_numpy(c)) for c in chunked(x, sizes)])
    want = logmel(torch.from_numpy(x))
    assert got.shape == want.shape == (num_frames(len(x)), 80)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_stream_buffer_is_bounded():
    stream = StreamingLogMel(LogMel())
    for _ in range(300):
        stream.accept(torch.randn(777))
        assert stream._buffer.numel() < WINDOW + HOP


def test_short_and_empty_input():
    logmel = LogMel()
    assert logmel(torch.zeros(0)).shape == (0, 80)
    assert logmel(torch.zeros(WINDOW - 1)).shape == (0, 80)
    assert logmel(torch.zeros(WINDOW)).shape == (1, 80)
    assert torch.isfinite(logmel(torch.zeros(WINDOW))).all()  # log floor, no -inf on silence


def test_batch_lengths_match_num_frames():
    lengths = torch.tensor([0, 399, 400, 559, 560, 16000])
    assert batch_lengths(lengths).tolist() == [num_frames(int(n)) for n in lengths]
