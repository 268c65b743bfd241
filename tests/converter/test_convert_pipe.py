"""The in-memory hand-over from the analysis to an upload thread (``_MemoryPipe``).

It must bound memory (the writer waits at the limit), hand over the end only after a verified
EOF, report an abandoned stream, and never block the writer once the reader gave up.
"""

from __future__ import annotations

import threading

import pytest

from sanctum.converter.convert import _MemoryPipe, _SpoolAbandonedError


def _drain(pipe: _MemoryPipe, got: list[bytes], outcome: list[object]) -> None:
    try:
        while chunk := pipe.read():
            got.append(chunk)
        outcome.append("eof")
    except _SpoolAbandonedError as error:
        outcome.append(error)


def test_the_writer_waits_at_the_limit_and_the_reader_sees_the_end_after_verification() -> None:
    pipe = _MemoryPipe(limit=10)
    pipe.write(b"0123456789")  # At the limit: the next write must wait for the reader.
    second_written = threading.Event()

    def writer() -> None:
        pipe.write(memoryview(b"abc"))
        second_written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert not second_written.wait(0.2)
    assert pipe.read() == b"0123456789"
    assert second_written.wait(5)
    thread.join()
    got: list[bytes] = []
    outcome: list[object] = []
    reader = threading.Thread(target=_drain, args=(pipe, got, outcome))
    reader.start()
    assert not outcome  # No end before the writer's verified EOF.
    pipe.end(verified=True)
    reader.join(5)
    assert got == [b"abc"]
    assert outcome == ["eof"]


def test_an_abandoned_pipe_raises_in_the_reader() -> None:
    pipe = _MemoryPipe(limit=100)
    pipe.write(b"partial")
    pipe.end(verified=False)
    with pytest.raises(_SpoolAbandonedError):
        pipe.read()


def test_a_released_pipe_never_blocks_the_writer() -> None:
    pipe = _MemoryPipe(limit=4)
    pipe.write(b"full")
    done = threading.Event()

    def writer() -> None:
        for _ in range(100):
            pipe.write(b"more")
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert not done.wait(0.1)
    pipe.release()  # The upload failed: the analysis must carry on.
    assert done.wait(5)
    thread.join()
