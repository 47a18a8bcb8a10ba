"""Decode a dump file (.zst, .gz or plain NDJSON) into chunks of whole lines, with memory bounded whatever the file holds.

Two promises, both about inputs that compress absurdly well or are damaged:

- Memory does not follow the data. zstd is fed one block at a time (RFC 8878 framing: each block decodes to at most
  128 KiB, even an RLE block of four bytes) and gzip is inflated 128 KiB at a time, so a few KB of compressed input can
  never become gigabytes at once. A line longer than `max_line` is never held whole: its bytes are dropped as they
  arrive and only its length is kept (`LineChunk.long_line`), so the reader rejects it and goes on at the next newline.
- Damage loses nothing that was decoded. Everything decoded before the first undecodable byte is yielded; then
  `DumpDamaged` says where the damage is and how long the line was that it cut (`open_line`), so the caller can
  account for the lost tail as one reject.

A --long=31 stream still needs its 2 GiB decoder window: that is the format, not the data. The decoder does the
byte-level work on each block while it is in cache: it counts the lines and checks that each is one `{...}`
(`LineChunk.lines`, `.braced`), which the reader would otherwise do with another pass over the chunk.
"""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import zstandard

ZSTD_MAX_WINDOW = 2**31  # real dumps are written with `zstd --long=31`
PLAIN_SUFFIXES = (".ndjson", ".jsonl", ".json")

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MAGIC = 0x184D2A50  # ... 0x184D2A5F: skippable frames (metadata), no data
_BLOCK_BYTES = 128 << 10  # decoded bytes per step: zstd's largest block; gzip and plain files are read the same way
_GZIP_READ = 1 << 16
# Lines handed to a worker at once: planning the DuckDB query costs ~5 ms, so smaller chunks spend much of their
# time there; larger ones than 16 MiB go past glibc's largest mmap threshold and pay page faults for every chunk.
CHUNK_BYTES = 16 << 20


class DumpReadError(Exception):
    """A dump file that cannot be read at all: missing, not the compression its name says, unknown type."""


class DumpDamaged(Exception):
    """The compressed data breaks off at `offset` (of `size` bytes); everything decoded before it was yielded."""

    def __init__(self, path: Path, offset: int, size: int, cause: str, check: str) -> None:
        super().__init__(f"{path.name}: compressed bytes {offset}-{size} of {size} cannot be decoded ({cause})")
        self.path, self.offset, self.size, self.cause, self.check = path, offset, size, cause, check
        self.open_line = 0  # decoded bytes of the line the damage cut (set by read_line_chunks)


@dataclass(frozen=True, slots=True)
class LineChunk:
    data: bytes | memoryview  # whole lines, each ending in a newline, none longer than max_line
    long_line: int | None = None  # a line that follows data's lines, longer than max_line: its length, bytes dropped
    lines: int | None = None  # the number of lines in data, when the reader counted them
    # Each line of data is `{...}`: it starts with "{" and ends with "}" right before its newline. Then no JSON value
    # can span two lines (after a "}" closing a nested value comes "," "}" or "]", never a "{"), so a parser that
    # reads the lines as one stream of values sees one value per line exactly when it finds `lines` values.
    braced: bool = False


def read_line_chunks(path: Path, max_line: int, buffers: Callable[[], memoryview] | None = None) -> Iterator[LineChunk]:
    """Chunks of whole lines of the decoded dump, each about CHUNK_BYTES. Raises DumpReadError up front when the file
    cannot be read at all, DumpDamaged after the last chunk when it breaks off. A final line without a newline is
    completed. The lines are written into buffers of buffer_bytes(max_line) that `buffers` hands out (default: one
    buffer, used again); a chunk's data is valid until the next chunk is asked for."""
    if buffers is None:
        one = memoryview(bytearray(buffer_bytes(max_line)))
        buffers = lambda: one  # noqa: E731 (the caller is done with a chunk when it asks for the next)
    lines = _Lines(max_line, buffers)
    try:
        for block in _decoded_blocks(path):
            yield from lines.feed(block)
    except DumpDamaged as damage:
        damage.open_line = lines.open_line()
        yield from lines.cut_off()
        raise
    yield from lines.finish()


def buffer_bytes(max_line: int) -> int:
    """The most bytes _Lines holds at once: a chunk, a line up to max_line still open, a block, a final newline."""
    return CHUNK_BYTES + max_line + _BLOCK_BYTES + 1


# ---------------------------------------------------------------------------------------------------------------------
# Decoded blocks, in order, each at most _BLOCK_BYTES


def _decoded_blocks(path: Path) -> Iterator[bytes]:
    suffix = path.suffix.lower()
    if suffix in (".zst", ".zstd"):
        return _zstd_blocks(path)
    if suffix == ".gz":
        return _gzip_blocks(path)
    if suffix in PLAIN_SUFFIXES:
        return _plain_blocks(path)
    raise DumpReadError(f"{path}: unknown dump type {suffix!r}; expected .zst, .gz or one of {', '.join(PLAIN_SUFFIXES)}")


def _open(path: Path):
    try:
        return open(path, "rb", buffering=1 << 20)
    except OSError as error:
        raise DumpReadError(f"cannot open dump {path}: {error.strerror or error}; check the path and permissions") from error


def _zstd_blocks(path: Path) -> Iterator[bytes]:
    """Decode a zstd file (one or more frames, skippable frames skipped), feeding the decoder one block at a time."""
    fh = _open(path)  # opened here, not in the generator, so that a missing file fails before reading starts
    size = os.fstat(fh.fileno()).st_size
    try:
        zstandard.get_frame_parameters(fh.read(18))  # 18 bytes: the longest frame header
    except zstandard.ZstdError as error:
        fh.close()
        raise DumpReadError(f"{path} is {'empty' if size == 0 else 'not a zstd file'} ({error}); check that it is "
                            f"a Pushshift RS_*.zst dump and re-download it") from error
    fh.seek(0)
    return _zstd_frames(path, fh, size)


def _zstd_frames(path: Path, fh, size: int) -> Iterator[bytes]:
    check = f"`zstd -t --long=31 {path.name}`"
    new_decoder = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj
    offset = 0  # of the next unread compressed byte

    def take(n: int) -> bytes:
        nonlocal offset
        data = fh.read(n)
        if len(data) < n:
            raise DumpDamaged(path, offset, size, "the file ends mid-frame: a truncated download?", check)
        offset += n
        return data

    def decode(at: int, piece: bytes) -> bytes:
        try:
            return decoder.decompress(piece)
        except zstandard.ZstdError as error:
            raise DumpDamaged(path, at, size, str(error), check) from error

    with fh:
        while offset < size:
            at, magic = offset, int.from_bytes(take(4), "little")
            if magic & ~0xF == _SKIPPABLE_MAGIC:
                fh.seek(int.from_bytes(take(4), "little"), os.SEEK_CUR)
                offset = fh.tell()
                continue
            if magic != _ZSTD_MAGIC:
                raise DumpDamaged(path, at, size, f"no zstd frame starts here (magic number {magic:#010x})", check)
            descriptor = take(1)[0]
            single_segment, has_checksum = descriptor >> 5 & 1, descriptor >> 2 & 1
            header_rest = (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3] + (single_segment, 2, 4, 8)[descriptor >> 6]
            decoder = new_decoder()
            decode(at, magic.to_bytes(4, "little") + bytes([descriptor]) + take(header_rest))
            last = False
            while not last:
                at, header = offset, take(3)
                value = int.from_bytes(header, "little")
                last, block_type, block_size = value & 1, value >> 1 & 3, value >> 3
                if block := decode(at, header + take(1 if block_type == 1 else block_size)):  # RLE: one byte stored
                    yield block
            if has_checksum:
                decode(offset, take(4))


def _gzip_blocks(path: Path) -> Iterator[bytes]:
    fh = _open(path)
    size = os.fstat(fh.fileno()).st_size
    if fh.read(2) != b"\x1f\x8b":
        fh.close()
        raise DumpReadError(f"{path} is not a gzip file (no gzip magic bytes); check the file or its name")
    fh.seek(0)
    return _gzip_members(path, fh, size)


def _gzip_members(path: Path, fh, size: int) -> Iterator[bytes]:
    """Inflate a gzip file (one or more members) at most _BLOCK_BYTES at a time. zlib discards a call's output when it
    fails, so each call starts from a copy of the decoder, and a failed call is replayed from the copy one byte at a
    time to yield what decoded before the damage."""
    check = f"`gzip -t {path.name}`"
    decoder, in_member, offset = zlib.decompressobj(wbits=31), False, 0  # offset: of data's first byte
    with fh:
        while data := fh.read(_GZIP_READ):
            while True:
                saved, fed = decoder.copy(), bool(data)
                try:
                    block = decoder.decompress(data, _BLOCK_BYTES)
                except zlib.error as error:
                    for i in range(len(data)):
                        try:
                            yield saved.decompress(data[i:i + 1])
                        except zlib.error:
                            raise DumpDamaged(path, offset + i, size, str(error), check) from error
                    raise DumpDamaged(path, offset + len(data), size, str(error), check) from error
                if block:
                    yield block
                in_member |= fed
                rest = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                offset += len(data) - len(rest)
                if decoder.eof:
                    decoder, in_member = zlib.decompressobj(wbits=31), False
                data = rest
                if not data and len(block) < _BLOCK_BYTES:  # else output may still be pending inside zlib
                    break
    if in_member:
        raise DumpDamaged(path, size, size, "the file ends mid-member: a truncated download?", check)


def _plain_blocks(path: Path) -> Iterator[bytes]:
    with _open(path) as fh:
        while block := fh.read(_BLOCK_BYTES):
            yield block


# ---------------------------------------------------------------------------------------------------------------------
# Whole lines


class _Lines:
    """Cuts decoded blocks into LineChunks of whole lines, dropping lines over max_line. Each decoded byte is copied
    once, into the buffer that `buffers` gave last (in the second process: a slot of the memory shared with the
    reader, so that a chunk is handed over without another copy). When a chunk is taken, the bytes of the line still
    open move to the start of a new buffer."""

    def __init__(self, max_line: int, buffers: Callable[[], memoryview]) -> None:
        self.max_line, self.buffers = max_line, buffers
        self.buffer = buffers()
        self.size = 0  # bytes in buffer: whole lines, then the `tail` bytes of the open line
        self.tail = 0
        self.skipped: int | None = None  # length so far of an open line over max_line, whose bytes are dropped
        # where the buffer's newlines are, block by block (found while the block is in cache); None: not counted
        self.newlines: list[np.ndarray] | None = []

    def feed(self, block: bytes) -> Iterator[LineChunk]:
        if self.skipped is not None:
            end = block.find(b"\n")
            if end < 0:
                self.skipped += len(block)
                return
            yield LineChunk(b"", self.skipped + end)
            self.skipped, block = None, block[end + 1:]
        if self.tail + len(block) > self.max_line:  # a line may pass the cap here: look at each line (rare)
            yield from self._feed_lines(block)
            return
        at = self.size
        self._write(block)
        newlines = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
        if self.newlines is not None and len(newlines):
            self.newlines.append(newlines + at)
        cut = int(newlines[-1]) + 1 if len(newlines) else 0
        self.tail = self.tail + len(block) if cut == 0 else len(block) - cut
        if self.size >= CHUNK_BYTES and self.size > self.tail:
            yield from self._take()

    def _feed_lines(self, block: bytes) -> Iterator[LineChunk]:
        start, self.newlines = 0, None
        while (end := block.find(b"\n", start)) >= 0:
            length = self.tail + end - start
            if length > self.max_line:
                yield from self._take(long_line=length)
                self.newlines = None  # of the new buffer: lines written here are not counted
            else:
                self._write(block[start:end + 1])
                self.tail = 0
            start = end + 1
        rest = len(block) - start
        if self.tail + rest > self.max_line:
            self.skipped = self.tail + rest
            yield from self._take(long_line=None, drop_open=True)
            self.newlines = None
        elif rest:
            self._write(block[start:])
            self.tail += rest
        if self.size - self.tail >= CHUNK_BYTES:
            yield from self._take()

    def _write(self, data: bytes) -> None:
        end = self.size + len(data)
        self.buffer[self.size:end] = data
        self.size = end

    def _take(self, long_line: int | None = None, drop_open: bool = False) -> Iterator[LineChunk]:
        """The whole lines held as a chunk (with the long line after them, whose bytes are dropped; or dropping the
        open line's bytes), then the open line's bytes move to a new buffer."""
        cut = self.size - self.tail
        if long_line is not None or drop_open:
            self.size, self.tail = cut, 0
        if cut == 0:
            if long_line is not None:
                yield LineChunk(b"", long_line)
            return
        yield LineChunk(self.buffer[:cut], long_line, *self._line_facts(cut))
        open_bytes = bytes(self.buffer[cut:self.size])  # before the new buffer: it may be this one again
        self.buffer, self.size, self.newlines = self.buffers(), 0, []
        self._write(open_bytes)

    def _line_facts(self, cut: int) -> tuple[int | None, bool]:
        """LineChunk.lines and .braced of the chunk buffer[:cut]."""
        if self.newlines is None:
            return None, False
        newlines = np.concatenate(self.newlines) if self.newlines else np.empty(0, np.int64)
        data = np.frombuffer(self.buffer, np.uint8, cut)
        braced = data[0] == 123 and (data[newlines - 1] == 125).all() and (data[newlines[:-1] + 1] == 123).all()
        return len(newlines), bool(braced)

    def finish(self) -> Iterator[LineChunk]:
        if self.skipped is not None:  # the last line, over the cap, had no newline
            yield LineChunk(b"", self.skipped)
        if self.tail:
            if self.newlines is not None:
                self.newlines.append(np.array([self.size]))
            self._write(b"\n")
            self.tail = 0
        yield from self._take()

    def open_line(self) -> int:
        """The length of the line that is open (read in part)."""
        return self.tail if self.skipped is None else self.skipped

    def cut_off(self) -> Iterator[LineChunk]:
        """At damage: the whole lines still held; the open line's bytes are dropped."""
        yield from self._take(drop_open=True)


# ---------------------------------------------------------------------------------------------------------------------
# Decoding in a second process

# One zstd frame is decoded on one core, and parsing the lines takes another core's worth of work, under the GIL: a
# thread could not decode beside it. So a second process runs read_line_chunks with one of a few slots of memory
# shared with this one as each chunk's buffer (each decoded block is copied once, into the slot, while it is in
# cache), while this one parses the chunk before; a pipe each way says which slot is full and which is free again.
# Small files are decoded here: the process costs ~0.1 s to start.
SEPARATE_PROCESS_MIN_BYTES = 1 << 20  # compressed
_SLOTS = 3  # one being parsed, one being filled, one ready
_HEADER = struct.Struct("<BBQqq?")  # message kind, slot, length of the data, long_line, lines (-1: none), braced
_IN_SLOT, _INLINE, _DAMAGED, _UNREADABLE, _END = range(5)  # _INLINE: the data follows on the pipe (a long line only)


def line_chunks(path: Path, max_line: int, separate_process: bool) -> Iterator[LineChunk]:
    """read_line_chunks, decoded in a second process when separate_process and the file is big enough to gain from
    it. A chunk's data is valid until the next chunk is asked for."""
    try:
        small = path.stat().st_size < SEPARATE_PROCESS_MIN_BYTES
    except OSError:  # read_line_chunks says what is wrong
        small = True
    return read_line_chunks(path, max_line) if small or not separate_process else _chunks_from_process(path, max_line)


def _chunks_from_process(path: Path, max_line: int) -> Iterator[LineChunk]:
    slot_bytes = buffer_bytes(max_line)
    # memfd: shared memory that is freed with its last user; elsewhere an unlinked temporary file does the same
    fd = os.memfd_create("dump-chunks") if hasattr(os, "memfd_create") else os.dup(tempfile.TemporaryFile().fileno())
    try:
        os.ftruncate(fd, _SLOTS * slot_bytes)  # sparse: only the pages written cost memory
        shared = memoryview(mmap.mmap(fd, _SLOTS * slot_bytes))
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        decoder = subprocess.Popen(
            [sys.executable, "-c", "from gptcore.corpus.dump_lines import serve_line_chunks; serve_line_chunks()",
             str(path), str(max_line), str(slot_bytes), str(CHUNK_BYTES), str(fd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, pass_fds=(fd,), env=env)
    finally:
        os.close(fd)  # the mapping and the decoder hold it
    done = False
    try:
        while True:
            kind, slot, length, long_line, lines, braced = _HEADER.unpack(_read_exactly(decoder, _HEADER.size))
            long = None if long_line < 0 else long_line
            if kind == _IN_SLOT:
                yield LineChunk(shared[slot * slot_bytes:slot * slot_bytes + length], long, None if lines < 0 else lines,
                                braced)
                with contextlib.suppress(BrokenPipeError):  # a decoder that is done reads no more
                    decoder.stdin.write(bytes([slot]))  # parsed: the decoder may fill it again
            elif kind == _INLINE:
                yield LineChunk(_read_exactly(decoder, length), long)
            elif kind == _DAMAGED:
                fields = json.loads(_read_exactly(decoder, length))
                damage = DumpDamaged(path, fields["offset"], fields["size"], fields["cause"], fields["check"])
                damage.open_line = fields["open_line"]
                raise damage
            elif kind == _UNREADABLE:
                raise DumpReadError(_read_exactly(decoder, length).decode())
            else:
                done = True
                return
    finally:
        with contextlib.suppress(BrokenPipeError):
            decoder.stdin.close()
        if not done:  # the reader stopped early, or the dump is damaged or unreadable: nothing more is wanted
            decoder.kill()
        decoder.wait()
        decoder.stdout.close()


def _read_exactly(decoder: subprocess.Popen, n: int) -> bytes:
    data = bytearray()
    while len(data) < n and (piece := decoder.stdout.read(n - len(data))):  # unbuffered: reads may come short
        data += piece
    if len(data) < n:
        decoder.kill()
        raise RuntimeError(f"the process decoding the dump exited (code {decoder.wait()}) before it was done; its "
                           f"error is printed above")
    return bytes(data)


def serve_line_chunks() -> None:
    """The decoder process: argv = path, max_line, slot_bytes, chunk_bytes, fd of the shared slots."""
    global CHUNK_BYTES
    path, (max_line, slot_bytes, CHUNK_BYTES, fd) = Path(sys.argv[1]), map(int, sys.argv[2:])
    shared = memoryview(mmap.mmap(fd, _SLOTS * slot_bytes))
    out, freed = sys.stdout.buffer, sys.stdin.buffer
    free, filling = list(range(_SLOTS)), [0]  # filling: the slot _Lines writes into, where its next chunk lies

    def next_slot() -> memoryview:
        if not free:
            free.append(_wait_for_free_slot(freed))
        filling[0] = slot = free.pop()
        return shared[slot * slot_bytes:(slot + 1) * slot_bytes]

    def send(kind: int, data: bytes = b"", slot: int = 0, long_line: int | None = None, inline: bool = True,
             lines: int | None = None, braced: bool = False) -> None:
        out.write(_HEADER.pack(kind, slot, len(data), -1 if long_line is None else long_line,
                               -1 if lines is None else lines, braced))
        if inline:
            out.write(data)
        out.flush()

    try:
        for chunk in read_line_chunks(path, max_line, next_slot):
            if chunk.data:  # in the slot being filled, which the reader frees once it has parsed it
                send(_IN_SLOT, chunk.data, filling[0], chunk.long_line, False, chunk.lines, chunk.braced)
            else:
                send(_INLINE, b"", long_line=chunk.long_line)
    except DumpDamaged as damage:
        send(_DAMAGED, json.dumps({"offset": damage.offset, "size": damage.size, "cause": damage.cause,
                                   "check": damage.check, "open_line": damage.open_line}).encode())
    except DumpReadError as error:
        send(_UNREADABLE, str(error).encode())
    else:
        send(_END)


def _wait_for_free_slot(freed: BinaryIO) -> int:
    slot = freed.read(1)
    if not slot:  # the reader is gone
        sys.exit(0)
    return slot[0]
