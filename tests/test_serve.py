"""`asr serve`: batched streaming equals streaming alone; streamed finals and uploads equal `asr transcribe`;
every limit and bad input ends only its own stream while another stream carries on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest

from asr.lm import default_lm
import torch

aiohttp = pytest.importorskip("aiohttp", reason="asr serve needs aiohttp (pip install aiohttp)")

from asr.apps.serve import Limits, Server  # noqa: E402
from asr.apps.serve import serve_in_thread as running  # noqa: E402
from asr.audio import load_audio, resample  # noqa: E402
from asr.model import AcousticModel, ModelConfig  # noqa: E402
from asr.output import render  # noqa: E402
from asr.streaming import StreamingRecognizer, accept_batch  # noqa: E402
from asr.transcribe import batch_logits, transcribe, transcript_from_logits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Named, not globbed: the limit test needs a clip under its 5 s stream limit (SAMPLES[0]) and the others
# their lengths; adding a bundled sample must not change which audio a test streams.
SAMPLES = [ROOT / "assets" / "samples" / name for name in
           ("espeak-en-us-m3.wav", "festival-ked.wav", "flite-rms.wav", "human-front-left.wav")]


# ---------------------------------------------------------------- batching equals streaming alone

def random_model(seed: int = 0, **kw) -> AcousticModel:
    torch.manual_seed(seed)
    model = AcousticModel(ModelConfig(hidden=64, layers=3, **kw)).eval()
    model.normalizer.set_stats(torch.randn(80) - 5, torch.rand(80) + 1)
    return model


@pytest.mark.parametrize("kw", [{}, {"lookahead": 2}, {"stack": 2, "lookahead": 1}, {"rnn": "lstm"}],
                         ids=["gru", "lookahead2", "stack2-lookahead1", "lstm"])
def test_accept_batch_equals_each_stream_alone(kw):
    rng = np.random.default_rng(0)
    model = random_model(1, **kw)
    n = 6
    audio = [(rng.standard_normal(int(rng.integers(0, 24000))) * 0.1).astype(np.float32) for _ in range(n)]
    batched = [StreamingRecognizer(model) for _ in range(n)]
    alone = [StreamingRecognizer(model) for _ in range(n)]
    got: list[list[torch.Tensor]] = [[] for _ in range(n)]
    want: list[list[torch.Tensor]] = [[] for _ in range(n)]
    pos = [0] * n
    while any(p < len(a) for p, a in zip(pos, audio)):
        # Different chunk sizes per stream, so the batch mixes streams with 0, 1 and many ready steps.
        chunks = []
        for i in range(n):
            size = int(rng.choice([0, 1, 37, 160, 479, 1600, 5000]))
            chunks.append(audio[i][pos[i]:pos[i] + size])
            pos[i] += size
        for i, logits in enumerate(accept_batch(batched, chunks)):
            got[i].append(logits)
        for i in range(n):
            want[i].append(alone[i].accept_logits(chunks[i]))
            assert (batched[i].state is None) == (alone[i].state is None)
            if alone[i].state is not None:  # the carried GRU (or LSTM) state is each stream's own
                for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (batched[i].state, alone[i].state))):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for i in range(n):
        g = torch.cat(got[i] + [batched[i].flush_logits()])
        w = torch.cat(want[i] + [alone[i].flush_logits()])
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
        assert batched[i].finish().text == alone[i].finish().text


def test_accept_batch_rejects_mixed_models():
    a, b = random_model(1), random_model(2)
    with pytest.raises(ValueError, match="share one model"):
        accept_batch([StreamingRecognizer(a), StreamingRecognizer(b)], [np.zeros(10)] * 2)


# ---------------------------------------------------------------- a real server on loopback

@pytest.fixture(scope="module")
def model() -> AcousticModel:
    return AcousticModel.load(ROOT / "assets" / "model.pt")


@pytest.fixture(scope="module")
def url(model) -> Iterator[str]:
    with running(Server(model)) as base:
        yield base


async def stream_file(base: str, audio: np.ndarray, rng: np.random.Generator, rate: int = 16000,
                      fmt: str = "f32le", pace: float = 0.0, **config) -> dict:
    """Streams `audio` (already at `rate`) in random chunk sizes (any byte count), then eof; returns the
    messages by type and the close code."""
    data = (audio * 32768).clip(-32768, 32767).astype("<i2").tobytes() if fmt == "s16le" \
        else audio.astype("<f4").tobytes()
    got: dict = {"partial": [], "final": [], "error": [], "end": [], "ready": []}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(base + "/ws") as ws:
            await ws.send_str(json.dumps({"type": "config", "sample_rate": rate, "format": fmt, **config}))
            i = 0
            while i < len(data):
                n = int(rng.choice([1, 3, 640, 1001, 3200, 9999, 32000]))
                await ws.send_bytes(data[i:i + n])
                i += n
                if pace:
                    await asyncio.sleep(pace)
            await ws.send_str('{"type": "eof"}')
            async for msg in ws:
                m = json.loads(msg.data)
                got[m["type"]].append(m)
            got["close"] = ws.close_code
    return got


def expected_words(result) -> list[tuple]:
    return [(w.text, w.start, w.end, w.confidence) for w in result.words]


def received_words(final: dict) -> list[tuple]:
    return [(w["word"], w["start"], w["end"], w["confidence"]) for w in final["words"]]


def assert_same_words(got: list[tuple], want: list[tuple]) -> None:
    assert [w[:3] for w in got] == [w[:3] for w in want]  # words and times exactly
    # Confidences are posteriors of logits equal to 1e-5 (batched GEMMs round differently), shown to 4 places.
    assert np.allclose([w[3] for w in got], [w[3] for w in want], atol=2e-4)


def test_streamed_finals_equal_transcribe_for_every_sample(url, model):
    """Four clients at once, random chunk sizes (odd byte counts included): batched, and each final is
    `asr transcribe` of its file, word for word, time for time."""
    audios = [load_audio(p) for p in SAMPLES]

    async def main() -> list[dict]:
        return await asyncio.gather(*(stream_file(url, a, np.random.default_rng(i), pace=0.002)
                                      for i, a in enumerate(audios)))

    results = asyncio.run(main())
    for path, audio, got in zip(SAMPLES, audios, results):
        want = transcribe(model, audio)
        assert got["close"] == 1000 and not got["error"]
        assert got["ready"][0]["sample_rate"] == 16000
        assert len(got["final"]) == 1, (path.name, got["final"])
        final = got["final"][0]
        assert final["text"] == want.text, path.name
        assert_same_words(received_words(final), expected_words(want))
        assert final["start"] == want.words[0].start and final["end"] == want.words[-1].end
        assert final["reason"] == "end" and final["samples"] == len(audio)
        assert got["end"][0]["samples"] == len(audio) and got["end"][0]["utterances"] == 1
        samples = [m["samples"] for m in got["partial"]]
        assert samples == sorted(samples) and all(0 < s <= len(audio) for s in samples)
        texts = [m["text"] for m in got["partial"]]
        assert all(a != b for a, b in zip(texts, texts[1:]))  # partials only when the text changes
    stats = asyncio.run(get_json(url + "/health"))
    assert stats["stream_steps"] > stats["steps"] > 0  # some steps served several streams in one model call


async def get_json(address: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(address) as r:
            return await r.json()


def test_resampled_s16le_stream_equals_transcribe_of_the_same_samples(url, model):
    audio16 = load_audio(SAMPLES[0])
    audio48 = resample(audio16, 16000, 48000)
    got = asyncio.run(stream_file(url, audio48, np.random.default_rng(5), rate=48000, fmt="s16le",
                                  partials="always"))
    # What the server saw: the s16 samples, resampled to 16 kHz in one piece (the streaming resampler is exact).
    heard = (audio48 * 32768).clip(-32768, 32767).astype(np.int16).astype(np.float32) / 32768
    want = transcribe(model, resample(heard, 48000, 16000))
    assert got["close"] == 1000
    assert [f["text"] for f in got["final"]] == [want.text]
    assert_same_words(received_words(got["final"][0]), expected_words(want))
    assert got["final"][0]["samples"] == len(audio48)
    # "always": a partial after every step, text changed or not; a step takes at most 1 s of one stream's audio.
    assert len(got["partial"]) >= len(audio48) // 48000


def test_endpoints_cut_utterances_with_stream_times(url, model):
    """Two files with 1.5 s of silence between: two finals, the second timed from the stream's start."""
    a, b = load_audio(SAMPLES[0]), load_audio(SAMPLES[2])
    gap = np.zeros(24000, np.float32)
    got = asyncio.run(stream_file(url, np.concatenate([a, gap, b]), np.random.default_rng(1)))
    assert [f["reason"] for f in got["final"]] == ["silence", "end"]
    first, second = got["final"]
    assert first["text"] == transcribe(model, a).text
    assert second["start"] > (len(a) + len(gap)) / 16000 - 0.3  # times keep counting from the stream start
    assert first["end"] < len(a) / 16000 + 0.1


def test_upload_returns_the_json_of_asr_transcribe(url, model):
    path = SAMPLES[1]
    audio = load_audio(path)
    result = transcript_from_logits(model, batch_logits(model, audio), len(audio) / 16000, None, align=True)
    want = render("json", result.text, result.words)

    async def main() -> tuple:
        async with aiohttp.ClientSession() as session:
            form = aiohttp.FormData()
            form.add_field("file", path.read_bytes(), filename=path.name, content_type="audio/wav")
            async with session.post(url + "/transcribe", data=form) as r:
                multipart = (r.status, await r.text())
            async with session.post(url + "/transcribe", data=path.read_bytes()) as r:
                raw = (r.status, await r.text())
            async with session.post(url + "/transcribe", data=b"not audio at all") as r:
                bad = (r.status, await r.json())
            async with session.get(url + "/") as r:
                page = (r.status, r.headers.get("Content-Security-Policy", ""), await r.text())
            async with session.get(url + "/static/app.js") as r:
                script = r.status
        return multipart, raw, bad, page, script

    multipart, raw, bad, page, script = asyncio.run(main())
    assert multipart == (200, want) and raw == (200, want)
    assert bad[0] == 400 and bad[1]["error"]["code"] == "bad-audio"
    assert page[0] == 200 and "default-src 'self'" in page[1] and 'id="mic"' in page[2]
    assert script == 200


# ---------------------------------------------------------------- limits and bad input, one stream at a time

async def open_and_expect(base: str, first: Optional[object], *then: object, headers: Optional[dict] = None,
                          wait: bool = True) -> tuple[list[dict], Optional[int]]:
    """Opens a stream, sends `first` (str -> text, bytes -> binary) and `then`; returns the messages and close code."""
    messages = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(base + "/ws", headers=headers) as ws:
            for item in (first, *then):
                if item is None:
                    continue
                try:
                    await (ws.send_str(item) if isinstance(item, str) else ws.send_bytes(item))
                except (ConnectionError, RuntimeError):
                    break
            if wait:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        messages.append(json.loads(msg.data))
            return messages, ws.close_code


CONFIG = json.dumps({"sample_rate": 16000, "format": "f32le"})


def test_each_limit_and_bad_input_ends_only_its_stream(model):
    limits = Limits(max_streams=4, max_message_bytes=64 * 1024, max_stream_seconds=5.0, idle_timeout=1.0,
                    max_upload_bytes=200_000)
    audio = load_audio(SAMPLES[0])
    want = transcribe(model, audio)
    tone = (0.1 * np.sin(np.arange(16000 * 6) * 0.05)).astype("<f4")

    async def bad_clients(base: str) -> dict:
        out = {}
        out["not json"] = await open_and_expect(base, "{not json")
        out["unknown field"] = await open_and_expect(base, json.dumps({"sample_rate": 16000, "sampel": 1}))
        out["audio first"] = await open_and_expect(base, b"\0\0\0\0")
        out["format"] = await open_and_expect(base, json.dumps({"sample_rate": 16000, "format": "mp3"}))
        out["rate"] = await open_and_expect(base, json.dumps({"sample_rate": 44101}))
        out["nan"] = await open_and_expect(base, CONFIG, np.array([0.1, np.nan], "<f4").tobytes())
        out["text after config"] = await open_and_expect(base, CONFIG, '{"type": "pause"}')
        out["too big"] = await open_and_expect(base, CONFIG, b"\0" * (64 * 1024 + 4))
        out["idle"] = await open_and_expect(base, CONFIG, tone[:1600].tobytes())
        out["too long"] = await open_and_expect(base, CONFIG, *[tone[i:i + 8000].tobytes()
                                                                for i in range(0, tone.size, 8000)])
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + "/ws", headers={"Origin": "http://evil.example"})
            out["origin"] = refused.value.status
            # DNS rebinding: a page of evil.example resolving to 127.0.0.1 would be "same origin".
            async with session.get(base + "/health", headers={"Host": "evil.example"}) as r:
                out["host"] = r.status
            async with session.post(base + "/transcribe", data=b"\0" * 300_000) as r:
                out["upload"] = (r.status, (await r.json())["error"]["code"])
            # A client that vanishes mid-stream (no close frame): the server just drops the stream.
            ws = await session.ws_connect(base + "/ws")
            await ws.send_str(CONFIG)
            await ws.send_bytes(tone[:4000].tobytes())
            ws._response.connection.transport.abort()
            # A client that closes without eof still gets its last final before the server's Close
            # (RFC 6455 lets an endpoint read after sending Close; aiohttp has no public half-close).
            ws = await session.ws_connect(base + "/ws")
            await ws.send_str(CONFIG)
            data = audio.astype("<f4").tobytes()
            for i in range(0, len(data), 32000):
                await ws.send_bytes(data[i:i + 32000])
            await ws._writer.close(1000, b"bye")
            closing = []
            while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                closing.append(json.loads(msg.data))
            out["close without eof"] = closing
            # Too many streams: hold every free slot open, then one more.
            await asyncio.sleep(0.2)  # let the server finish releasing the streams just closed
            active = (await get_json(base + "/health"))["streams"]
            held = [await session.ws_connect(base + "/ws") for _ in range(limits.max_streams - active)]
            for ws in held:
                await ws.send_str(CONFIG)
                assert (await ws.receive_json())["type"] == "ready"
            out["too many"] = await open_and_expect(base, None)
            for ws in held:
                await ws.close()
        return out

    async def main(base: str) -> tuple:
        good = asyncio.create_task(stream_file(base, audio, np.random.default_rng(3), pace=0.1))
        bad = await bad_clients(base)
        good_result = await good
        await asyncio.sleep(0.3)
        return bad, good_result, await get_json(base + "/health")

    with running(Server(model, limits=limits)) as base:
        bad, good, health = asyncio.run(main(base))

    def error(case: str) -> tuple[str, int]:
        messages, code = bad[case]
        errors = [m for m in messages if m["type"] == "error"]
        assert len(errors) == 1 and errors[0]["message"], (case, messages)
        return errors[0]["code"], code

    assert error("not json") == ("bad-message", 4000)
    assert error("unknown field") == ("bad-message", 4000)
    assert "sampel" in bad["unknown field"][0][-1]["message"]
    assert error("audio first") == ("bad-message", 4000)
    assert error("format") == ("unsupported-audio", 4001)
    assert error("rate") == ("unsupported-audio", 4001)
    assert error("nan") == ("unsupported-audio", 4001)
    assert error("text after config") == ("bad-message", 4000)
    assert error("too big") == ("message-too-big", 1009)
    assert error("idle") == ("idle-timeout", 4002)
    assert error("too long") == ("stream-too-long", 4003)
    # The audio up to the limit was decoded: its final (if any text) came before the error.
    assert bad["too long"][0][-1]["type"] == "error"
    assert error("too many") == ("too-many-streams", 1013)
    assert [m["text"] for m in bad["close without eof"] if m["type"] == "final"] == [want.text]
    assert bad["origin"] == 403 and bad["host"] == 403
    assert bad["upload"] == (413, "upload-too-big")
    # ... while the good stream, running all along, got exactly its transcript, and every slot was released.
    assert good["close"] == 1000 and not good["error"]
    assert [f["text"] for f in good["final"]] == [want.text]
    assert health["streams"] == 0


def test_allow_origin_and_config_endpoint_options(model):
    with running(Server(model, allow_origins=["http://app.example"])) as base:
        async def main() -> tuple:
            audio = load_audio(SAMPLES[0])
            a, b = audio, np.zeros(16000 * 2, np.float32)
            messages, code = await open_and_expect(
                base, json.dumps({"sample_rate": 16000, "endpoint_silence": 0.3, "max_utterance": 2.0}),
                np.concatenate([a, b]).astype("<f4").tobytes()[:600_000], '{"type": "eof"}',
                headers={"Origin": "http://app.example"})
            bad, bad_code = await open_and_expect(base, json.dumps({"sample_rate": 16000, "max_utterance": -1}))
            return messages, code, bad, bad_code

        messages, code, bad, bad_code = asyncio.run(main())
    finals = [m for m in messages if m["type"] == "final"]
    assert code == 1000 and len(finals) >= 2  # max_utterance 2 s cut the 4 s sentence
    assert {f["reason"] for f in finals} <= {"max-utterance", "silence", "end"} and "max-utterance" in \
        {f["reason"] for f in finals}
    assert bad_code == 4000 and "max_utterance" in bad[-1]["message"]


def test_command_line_server_starts_serves_and_stops():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "asr.apps.serve", "--port", "0", "--max-streams", "7"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        address = line.split("listening on ")[1].split()[0].rstrip("/")
        health = asyncio.run(get_json(address + "/health"))
        # the bundled LM is the default decoder's, when this installation has one
        default = "beam search + LM" if default_lm() else "greedy"
        assert health["status"] == "ok" and health["max_streams"] == 7 and health["decoder"] == default
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_failed_model_step_ends_those_streams_only(model, monkeypatch):
    import asr.apps.serve as serve

    real = serve.accept_batch
    calls = {"n": 0}

    def flaky(recognizers, chunks):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated failure (e.g. out of memory)")
        return real(recognizers, chunks)

    monkeypatch.setattr(serve, "accept_batch", flaky)
    audio = load_audio(SAMPLES[3])
    with running(Server(model)) as base:
        async def main() -> tuple:
            first = await open_and_expect(base, CONFIG, audio.astype("<f4").tobytes())
            second = await stream_file(base, audio, np.random.default_rng(0))
            return first, second, await get_json(base + "/health")

        (messages, code), second, health = asyncio.run(main())
    assert code == 1011 and [m["code"] for m in messages if m["type"] == "error"] == ["internal-error"]
    assert [f["text"] for f in second["final"]] == [transcribe(model, audio).text] and second["close"] == 1000
    assert health["streams"] == 0


@pytest.mark.parametrize("search_processes", [0, 2])
def test_lm_beam_search_for_streams_and_uploads(model, tmp_path, search_processes):
    """--lm: every stream has its own beam search (a fork in the server, or in a worker process); results
    equal `asr transcribe --lm` (streaming beam search equals batch decoding) for streams and uploads."""
    from asr.training.lm import build_arpa
    from asr.transcribe import make_decoder

    texts = [line.split("\t")[1] for line in (ROOT / "assets/samples/transcripts.tsv").read_text().splitlines()[1:]]
    lm = tmp_path / "lm.arpa"
    build_arpa(texts, lm, order=2)
    decoder = make_decoder(model.config.vocab, str(lm))
    audios = [load_audio(p) for p in SAMPLES[:3]]
    want = [transcribe(model, a, decoder=decoder) for a in audios]
    with running(Server(model, lm=str(lm), search_processes=search_processes)) as base:
        async def main() -> tuple:
            first = await asyncio.gather(*(stream_file(base, a, np.random.default_rng(i))
                                           for i, a in enumerate(audios[:2])))
            later = await stream_file(base, audios[2], np.random.default_rng(9))  # after others ended
            async with aiohttp.ClientSession() as session:
                async with session.post(base + "/transcribe", data=SAMPLES[0].read_bytes()) as r:
                    upload = json.loads(await r.text())
            return [*first, later], upload, await get_json(base + "/health")

        streams, upload, health = asyncio.run(main())
    assert health["decoder"] == "beam search + LM" and health["search_processes"] == search_processes
    for got, expected in zip(streams, want):
        assert got["close"] == 1000
        assert [f["text"] for f in got["final"]] == [expected.text]
        assert_same_words(received_words(got["final"][0]), expected_words(expected))
    assert upload["text"] == want[0].text


def test_load_generator_runs_levels_and_stops_by_itself():
    """The load generator (asr bench --serve): starts its own server, opens N real-time streams per level,
    measures every chunk, and ends; a tiny run here (the table in docs/server.md is the full one)."""
    import io

    from asr.apps.serve_bench import run_serve_bench

    out = io.StringIO()
    rows = run_serve_bench([1, 3], seconds=1.0, out=out, server_args=["--no-lm"])
    assert [r["streams"] for r in rows] == [1, 3]
    for row in rows:
        assert row["refused"] == 0 and row["dropped"] == 0 and not row["errors"]
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert "| streams |" in out.getvalue() and "decoder: greedy\n" in out.getvalue()
    if default_lm():  # the beam the server decodes with is part of the result: it sets the capacity
        rows = run_serve_bench([2], seconds=1.0, out=out, server_args=["--beam-size", "16"])
        assert rows[0]["decoder"] == "beam search + LM" and rows[0]["beam_size"] == 16
        assert rows[0]["dropped"] == 0 and not rows[0]["errors"]
