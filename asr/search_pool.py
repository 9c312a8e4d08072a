"""Beam searches of many streams in worker processes.

flashlight's beam search holds the GIL, so in one process the searches of all of a server's streams run
one after another on one core, however many cores the machine has. A `SearchPool` runs them in worker
processes instead: each worker builds the decoder once (LM and lexicon trie) and keeps one fork of it per
stream. A stream's `RemoteSearch` has the decoder interface StreamingRecognizer uses (`accept`, `text`,
`hypothesis`, `reset`); `accept` only buffers the logits, and `SearchPool.run(searches)` sends every
buffered piece in one message per worker, the workers search in parallel, and each stream gets its
partial text back. The logits and the search are the same as in a local `BeamSearchDecoder`, so the
results are exactly equal (tested).

All pipe traffic happens in the thread that calls `run`/`hypothesis`/`close` (the server's step thread);
`open` only allocates an id, so sessions can be created in another thread.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from typing import Optional, Sequence

import numpy as np
import torch

from .decoding import Hypothesis


class SearchError(RuntimeError):
    """A search worker died; the streams it served lost their search state."""


def _worker(conn, vocab: list[str], lm: str, beam_size: int) -> None:
    from .transcribe import make_decoder

    torch.set_num_threads(1)
    try:
        proto = make_decoder(vocab, lm, beam_size)
    except Exception as e:  # reported to the parent, which raises it as its own error
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", proto.beam_size))
    searches: dict[int, object] = {}
    while True:
        try:
            ops = conn.recv()
        except (EOFError, OSError):
            return
        if ops is None:
            return
        replies = []
        for kind, sid, reset, pieces in ops:
            if kind == "close":
                searches.pop(sid, None)
                continue
            search = searches.get(sid)
            if search is None:
                search = searches[sid] = proto.fork()
            elif reset:
                search.reset()
            for piece in pieces:
                search.accept(torch.from_numpy(piece))
            replies.append(search.text if kind == "step" else search.hypothesis().text)
        conn.send(replies)


class _Worker:
    def __init__(self, ctx, vocab: list[str], lm: str, beam_size: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, vocab, lm, beam_size), daemon=True,
                                   name="asr-search")
        self.process.start()
        child.close()
        status, value = self.conn.recv()
        if status == "error":
            self.process.join()
            raise ValueError(value)
        self.beam_size = value
        self.generation = next(_generations)


_generations = itertools.count()


class RemoteSearch:
    """One stream's beam search, living in a pool worker; the interface of BeamSearchDecoder."""

    def __init__(self, pool: "SearchPool", sid: int, worker: int):
        self.pool, self.sid, self.worker = pool, sid, worker
        self.beam_size = pool.beam_size
        self.generation: Optional[int] = None  # the worker process it lives in, once used
        self.reset()

    def reset(self) -> None:
        self._pieces: list[np.ndarray] = []
        self._reset = True
        self._text = ""
        self._final: Optional[Hypothesis] = None

    def accept(self, logits: torch.Tensor) -> None:
        if self._final is not None:
            raise RuntimeError("hypothesis() finalized this utterance; call reset() first")
        if logits.shape[0]:
            self._pieces.append(np.ascontiguousarray(logits.detach().float().numpy()))

    @property
    def pending(self) -> bool:
        return bool(self._pieces) or self._reset

    @property
    def text(self) -> str:
        """The partial text after everything accepted so far (one round trip if `run` has not sent it)."""
        if self._final is not None:
            return self._final.text
        if self._pieces:
            self.pool.run([self])
        return self._text

    def hypothesis(self) -> Hypothesis:
        if self._final is None:
            text = self.pool._exchange({self.worker: [self._op("final")]})[self.worker][0]
            index = {c: i for i, c in enumerate(self.pool.vocab)}
            self._final = Hypothesis(text, [index[c] for c in text])
        return self._final

    def close(self) -> None:
        """The stream ended: its worker drops the search (sent with the next exchange)."""
        self.pool._closed.setdefault(self.worker, []).append(self.sid)

    def _op(self, kind: str) -> tuple:
        current = self.pool.workers[self.worker].generation
        if self.generation is None:
            self.generation = current
        elif self.generation != current:  # its worker was restarted: the search so far is gone
            raise SearchError(f"stream {self.sid}: its beam search worker died")
        op = (kind, self.sid, self._reset, self._pieces)
        self._pieces, self._reset = [], False
        return op


class SearchPool:
    """`processes` workers, each with the decoder `make_decoder(vocab, lm, beam_size)` would build."""

    def __init__(self, vocab: Sequence[str], lm: str, beam_size: int = 0, processes: int = 2):
        self.vocab = list(vocab)
        self.lm, self._beam = lm, beam_size
        self._ctx = multiprocessing.get_context("spawn")  # the server has threads: no fork
        self.workers = [_Worker(self._ctx, self.vocab, lm, beam_size) for _ in range(max(1, processes))]
        self.beam_size = self.workers[0].beam_size
        self._ids = itertools.count()
        self._closed: dict[int, list[int]] = {}

    def open(self) -> RemoteSearch:
        sid = next(self._ids)
        return RemoteSearch(self, sid, sid % len(self.workers))

    def run(self, searches: Sequence[RemoteSearch]) -> None:
        """Send the buffered logits of `searches` (one message per worker) and store their partial texts."""
        ops: dict[int, list[tuple]] = {}
        todo: dict[int, list[RemoteSearch]] = {}
        for s in searches:
            if s.pending and s._final is None:
                ops.setdefault(s.worker, []).append(s._op("step"))
                todo.setdefault(s.worker, []).append(s)
        for worker, texts in self._exchange(ops).items():
            for s, text in zip(todo.get(worker, []), texts):
                s._text = text

    def _exchange(self, ops: dict[int, list[tuple]]) -> dict[int, list[str]]:
        """Send each worker its ops (plus pending closes), then collect the replies: workers run in parallel."""
        for worker, sids in self._closed.items():
            ops.setdefault(worker, []).extend(("close", sid, False, []) for sid in sids)
        self._closed = {}
        sent, failed = [], []
        for worker, batch in ops.items():
            try:
                self.workers[worker].conn.send(batch)
                sent.append(worker)
            except (OSError, ValueError):
                failed.append(worker)
        replies = {}
        for worker in sent:
            try:
                replies[worker] = self.workers[worker].conn.recv()
            except (EOFError, OSError):
                failed.append(worker)
        if failed:
            for worker in failed:  # a fresh process for later streams; these streams' searches are gone
                self._restart(worker)
            raise SearchError(f"beam search worker(s) {sorted(failed)} died; their streams lost their state")
        return replies

    def _restart(self, index: int) -> None:
        old = self.workers[index]
        old.process.kill()
        old.process.join(timeout=5)
        self.workers[index] = _Worker(self._ctx, self.vocab, self.lm, self._beam)

    def cpu_seconds(self) -> float:
        """CPU seconds the workers used so far (Linux /proc; 0 elsewhere), for load tests."""
        total = 0.0
        for w in self.workers:
            try:
                fields = open(f"/proc/{w.process.pid}/stat").read().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
        return total

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
            w.conn.close()
