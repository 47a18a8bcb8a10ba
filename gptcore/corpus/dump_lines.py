"""Decode a dump file (.zst, .gz or plain NDJSON) into chunks of whole lines, with memory bounded whatever the file holds.

Two promises, both about inputs that compress absurdly well or are damaged:

- Memory does not follow the data. zstd is fed one block at a time (RFC 8878 framing: each block decodes to at most
  128 KiB, even an RLE block of four bytes) and gzip is inflated 128 KiB at a time, so a few KB of compressed input can
  never become gigabytes at once. A line longer than `max_line` is never held whole: its bytes are dropped as they
  arrive and only its length is kept (`LineChunk.long_line`), so the reader rejects it and goes on at the next newline.
- Damage loses nothing that was decoded. Everything decoded before the first undecodable byte is yielded; then
  `DumpDamaged` says where the damage is and how long the line was that it cut (`open_line`), so the caller can
  account for the lost tail as one reject.

A --long=31 stream still needs its 2 GiB decoder window: that is the format, not the data.
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
from typing import BinaryIO, Iterator

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


def read_line_chunks(path: Path, max_line: int) -> Iterator[LineChunk]:
    """Chunks of whole lines of the decoded dump, each about CHUNK_BYTES. Raises DumpReadError up front when the file
    cannot be read at all, DumpDamaged after the last chunk when it breaks off. A final line without a newline is
    completed."""
    lines = _Lines(max_line)
    try:
        for block in _decoded_blocks(path):
            yield from lines.feed(block)
    except DumpDamaged as damage:
        whole, damage.open_line = lines.cut_off()
        if whole:
            yield LineChunk(whole)
        raise
    yield from lines.finish()


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
    """Cuts decoded blocks into LineChunks of whole lines with one copy of the data, dropping lines over max_line."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.pending: list[bytes] = []  # decoded, not yet yielded: whole lines, then `tail` bytes of the open line
        self.size = 0
        self.tail = 0
        self.skipped: int | None = None  # length so far of an open line over max_line, whose bytes are dropped

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
        self.pending.append(block)
        self.size += len(block)
        cut = block.rfind(b"\n") + 1
        self.tail = self.tail + len(block) if cut == 0 else len(block) - cut
        if self.size >= CHUNK_BYTES and cut:
            yield LineChunk(b"".join([*self.pending[:-1], block[:cut]]))
            self.pending, self.size = [block[cut:]], len(block) - cut

    def _feed_lines(self, block: bytes) -> Iterator[LineChunk]:
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            length = self.tail + end - start
            if length > self.max_line:
                yield LineChunk(self._take_whole_lines(), length)
            else:
                self.pending.append(block[start:end + 1])
                self.size += end + 1 - start
                self.tail = 0
            start = end + 1
        rest = len(block) - start
        if self.tail + rest > self.max_line:
            self.skipped = self.tail + rest
            if whole := self._take_whole_lines():
                yield LineChunk(whole)
        elif rest:
            self.pending.append(block[start:])
            self.size += rest
            self.tail += rest
        if self.size - self.tail >= CHUNK_BYTES:
            data = b"".join(self.pending)
            cut = len(data) - self.tail
            self.pending, self.size = [data[cut:]], self.tail
            yield LineChunk(data[:cut])

    def _take_whole_lines(self) -> bytes:
        """The whole lines held; the open line's bytes are dropped."""
        data = b"".join(self.pending)
        whole = data[:len(data) - self.tail]
        self.pending, self.size, self.tail = [], 0, 0
        return whole

    def finish(self) -> Iterator[LineChunk]:
        if self.skipped is not None:  # the last line, over the cap, had no newline
            yield LineChunk(b"", self.skipped)
        data = b"".join(self.pending)
        if data:
            yield LineChunk(data if data.endswith(b"\n") else data + b"\n")

    def cut_off(self) -> tuple[bytes, int]:
        """At damage: the whole lines still held, and the length of the open line the damage cut."""
        open_line = self.tail if self.skipped is None else self.skipped
        return self._take_whole_lines(), open_line


# ---------------------------------------------------------------------------------------------------------------------
# Decoding in a second process

# One zstd frame is decoded on one core, and parsing the lines takes another core's worth of work, under the GIL: a
# thread could not decode beside it. So a second process runs read_line_chunks and copies each chunk into one of a
# few slots of memory shared with this one, while this one parses the chunk before; a pipe each way says which slot
# is full and which is free again. Small files are decoded here: the process costs ~0.1 s to start.
SEPARATE_PROCESS_MIN_BYTES = 1 << 20  # compressed
_SLOTS = 3  # one being parsed, one being filled, one ready
_HEADER = struct.Struct("<BBQq")  # message kind, slot, length of the data, long_line (-1: none)
_IN_SLOT, _INLINE, _DAMAGED, _UNREADABLE, _END = range(5)  # _INLINE: the data follows on the pipe (no slot fits it)


def line_chunks(path: Path, max_line: int, separate_process: bool) -> Iterator[LineChunk]:
    """read_line_chunks, decoded in a second process when separate_process and the file is big enough to gain from
    it. A chunk's data is valid until the next chunk is asked for."""
    try:
        small = path.stat().st_size < SEPARATE_PROCESS_MIN_BYTES
    except OSError:  # read_line_chunks says what is wrong
        small = True
    return read_line_chunks(path, max_line) if small or not separate_process else _chunks_from_process(path, max_line)


def _chunks_from_process(path: Path, max_line: int) -> Iterator[LineChunk]:
    slot_bytes = CHUNK_BYTES + max_line + _BLOCK_BYTES + 1  # the largest chunk _Lines makes; larger ones go inline
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
            kind, slot, length, long_line = _HEADER.unpack(_read_exactly(decoder, _HEADER.size))
            long = None if long_line < 0 else long_line
            if kind == _IN_SLOT:
                yield LineChunk(shared[slot * slot_bytes:slot * slot_bytes + length], long)
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
    shared = mmap.mmap(fd, _SLOTS * slot_bytes)
    out, freed = sys.stdout.buffer, sys.stdin.buffer
    free = list(range(_SLOTS))

    def send(kind: int, data: bytes = b"", slot: int = 0, long_line: int | None = None, inline: bool = True) -> None:
        out.write(_HEADER.pack(kind, slot, len(data), -1 if long_line is None else long_line))
        if inline:
            out.write(data)
        out.flush()

    try:
        for chunk in read_line_chunks(path, max_line):
            if not chunk.data or len(chunk.data) > slot_bytes:
                send(_INLINE, chunk.data, long_line=chunk.long_line)
                continue
            if not free:
                free.append(_wait_for_free_slot(freed))
            slot = free.pop()
            shared[slot * slot_bytes:slot * slot_bytes + len(chunk.data)] = chunk.data
            send(_IN_SLOT, chunk.data, slot, chunk.long_line, inline=False)
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
