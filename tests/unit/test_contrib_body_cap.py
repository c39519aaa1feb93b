"""The framework-free webhook body cap shared by the contrib endpoints."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from billingkit.contrib import (
    CHUNK_BYTES,
    BodyTooLarge,
    declared_too_large,
    join_capped,
    read_capped,
    too_large,
)


def test_too_large_is_a_400_naming_the_cap() -> None:
    answer = too_large(1024)
    assert answer.status == 400
    assert json.loads(answer.body) == {"error": "body larger than 1024 bytes"}


@pytest.mark.parametrize(
    ("content_length", "expected"),
    [
        (None, False),
        ("10", False),
        (10, False),
        ("11", True),
        (11, True),
        ("not-a-number", False),
        ("", False),
    ],
)
def test_declared_too_large(content_length: str | int | None, expected: bool) -> None:
    assert declared_too_large(content_length, 10) is expected


def test_read_capped_returns_a_body_at_the_cap() -> None:
    assert read_capped(io.BytesIO(b"x" * 10).read, 10) == b"x" * 10
    assert read_capped(io.BytesIO(b"").read, 10) == b""


def test_read_capped_reads_a_large_body_in_chunks() -> None:
    body = bytes(range(256)) * ((CHUNK_BYTES * 2) // 256 + 3)
    sizes: list[int] = []
    stream = io.BytesIO(body)

    def read(n: int) -> bytes:
        sizes.append(n)
        return stream.read(n)

    assert read_capped(read, len(body)) == body
    assert max(sizes) == CHUNK_BYTES and len(sizes) > 3


def test_read_capped_stops_once_past_the_cap() -> None:
    stream = io.BytesIO(b"y" * (CHUNK_BYTES * 4))
    with pytest.raises(BodyTooLarge, match="100 bytes"):
        read_capped(stream.read, 100)
    assert stream.tell() == 101  # never more than the cap plus one byte was read


def test_join_capped_joins_chunks_up_to_the_cap() -> None:
    assert join_capped([b"ab", b"", b"cd"], 4) == b"abcd"
    assert join_capped([], 4) == b""


def test_join_capped_stops_at_the_first_chunk_past_the_cap() -> None:
    seen: list[bytes] = []

    def tracked() -> Iterator[bytes]:
        for chunk in [b"ab", b"cd", b"e", b"never"]:
            seen.append(chunk)
            yield chunk

    with pytest.raises(BodyTooLarge, match="4 bytes"):
        join_capped(tracked(), 4)
    assert seen == [b"ab", b"cd", b"e"]
