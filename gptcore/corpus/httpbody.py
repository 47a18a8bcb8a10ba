"""Read an HTTP response body with a hard cap on the decoded size.

The fetcher asks only for ``gzip`` and ``deflate`` and decodes them here rather than letting httpx do it: httpx
inflates each network chunk in one call, so a 64 KiB chunk of a compression bomb becomes ~64 MiB in memory before
any size check can run. Here zlib is told the most it may produce, so memory stays within the cap whatever the
compression ratio.
"""
from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    """The decoded body would exceed the cap (reading stops there, so no more than the cap is ever held)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes after decoding")


class BodyDecodeError(Exception):
    """The body uses an encoding the fetcher did not ask for, or its compressed data is corrupt."""


def media_type(content_type: str | None) -> str:
    """``"text/html; charset=utf-8"`` -> ``"text/html"``; empty string when the header is missing."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class _Decoder:
    """Incremental decoder for one Content-Encoding that never produces more than ``limit`` bytes in total."""

    def __init__(self, content_encoding: str | None, limit: int, truncate: bool) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding in ("deflate", "identity"):
            # RFC 9110 "deflate" is zlib-wrapped, but some servers send raw deflate: decided on the first byte.
            self._zlib = None
        else:
            raise BodyDecodeError(f"unsupported Content-Encoding {content_encoding!r} (asked for {ACCEPT_ENCODING})")
        self._deflate_undecided = encoding == "deflate"
        self._limit, self._truncate = limit, truncate
        self.produced = 0
        self._fed = False  # an empty body is empty whatever its Content-Encoding says
        self.full = False  # set when truncating: the cap is reached and later input is ignored

    def feed(self, data: bytes) -> bytes:
        self._fed = self._fed or bool(data)
        if self._deflate_undecided and data:
            zlib_wrapped = data[0] & 0x0F == 8 and data[0] >> 4 <= 7  # zlib header: CM = deflate, window <= 32K
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            self._deflate_undecided = False
        room = self._limit - self.produced
        if self._zlib is None:
            out = data
        else:
            try:
                # Asking for one byte more than fits tells "exactly full" from "overflowing".
                out = self._zlib.decompress(data, room + 1)
            except zlib.error as exc:
                raise BodyDecodeError(f"corrupt compressed body: {exc}") from exc
        return self._count(out)

    def finish(self) -> bytes:
        """Whatever zlib still holds once the last chunk has been fed; BodyDecodeError if the stream ends early."""
        if self._zlib is None:
            return b""
        tail = self._count(self._zlib.flush())
        if self._fed and not self._zlib.eof:  # else a cut-off stream would pass as a complete, shorter page
            raise BodyDecodeError("compressed body ends before its end-of-stream marker (truncated)")
        return tail

    def _count(self, out: bytes) -> bytes:
        room = self._limit - self.produced
        if len(out) > room:
            if not self._truncate:
                raise BodyTooLarge(self._limit)
            out, self.full = out[:room], True
        self.produced += len(out)
        return out


async def read_capped(
    raw_chunks: AsyncIterator[bytes], content_encoding: str | None, limit: int, truncate: bool = False
) -> bytes:
    """Decode ``raw_chunks`` (the body after transfer decoding) and return it.

    Past ``limit`` decoded bytes: BodyTooLarge, or with ``truncate`` the first ``limit`` bytes.
    """
    decoder = _Decoder(content_encoding, limit, truncate)
    parts = []
    async for chunk in raw_chunks:
        parts.append(decoder.feed(chunk))
        if decoder.full:
            return b"".join(parts)
    parts.append(decoder.finish())
    return b"".join(parts)
