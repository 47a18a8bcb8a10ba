"""Dump reading whose memory does not follow the data, and that counts every record: lines over the cap, damaged blocks."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest
import zstandard

from gptcore.corpus import dump_lines
from gptcore.corpus.dumps import REASONS, LinkFilterConfig, filter_dump
from flows.demo.dumpgen import submission_record as submission, write_dump

REPO = Path(__file__).resolve().parent.parent


def _line(i: int) -> bytes:
    return orjson.dumps(submission(f"s{i}", f"https://example.com/{i}", title=f"title {i}")) + b"\n"


def _kept_ids(result) -> list[str]:
    return sorted((i for ids in result.links["submission_ids"].to_pylist() for i in ids), key=lambda i: int(i[1:]))


def _rejects(result, reason: str) -> list[dict]:
    return result.rejects.filter(pc.equal(result.rejects["reason"], reason)).to_pylist()


def _assert_every_record_accounted(result) -> None:
    counts = result.counts
    assert counts["kept_submissions"] + result.rejects.num_rows - counts["truncated_dump"] == counts["records_read"]
    assert sum(counts[reason] for reason in REASONS) == result.rejects.num_rows


# ---------------------------------------------------------------------------------------------------------------------
# Lines over max_line_bytes


MAX_LINE = 1000  # a good line here is ~700 bytes
# lines of the file, "L<n>" = a line of n 'a's; expected: line numbers rejected as line_too_long
LONG_LINE_CASES = [
    (["good", "L1001", "good"], [2]),
    (["good", "L1000", "good"], []),  # exactly at the cap: read (and malformed, not too long)
    (["L5000", "good", "good"], [1]),
    (["good", "L300000", "L300000", "good"], [2, 3]),  # longer than a decoded block, twice in a row
    (["good", "good", "L300000"], [3]),  # the last line, too long, without a newline
]


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 2000])  # one chunk; a chunk every few lines
@pytest.mark.parametrize("suffix", [".zst", ".gz", ".ndjson"])
@pytest.mark.parametrize("lines, too_long", LONG_LINE_CASES)
def test_lines_over_the_cap_are_rejected_with_file_line_and_length_and_the_rest_is_read(
        tmp_path, monkeypatch, lines, too_long, suffix, chunk_bytes):
    monkeypatch.setattr(dump_lines, "CHUNK_BYTES", chunk_bytes)
    raw = b"".join(_line(n) if text == "good" else b"a" * int(text[1:]) + b"\n" for n, text in enumerate(lines, 1))
    raw = raw.rstrip(b"\n") if lines[-1] != "good" else raw
    path = tmp_path / f"RS_long{suffix}"
    path.write_bytes({".zst": zstandard.ZstdCompressor().compress, ".gz": gzip.compress, ".ndjson": bytes}[suffix](raw))

    result = filter_dump(path, LinkFilterConfig(max_line_bytes=MAX_LINE), workers=2)

    rejected = _rejects(result, "line_too_long")
    assert [r["item"] for r in rejected] == [f"RS_long{suffix}:{n}" for n in too_long]
    for n, reject in zip(too_long, rejected):
        length = int(lines[n - 1][1:])
        assert f"line {n} of RS_long{suffix} is {length:,} bytes > max_line_bytes=1,000" in reject["detail"]
    assert _kept_ids(result) == [f"s{n}" for n, text in enumerate(lines, 1) if text == "good"]
    assert result.counts["records_read"] == len(lines)
    _assert_every_record_accounted(result)


@pytest.mark.parametrize("suffix", [".zst", ".ndjson"])
def test_chunks_count_their_lines_and_say_whether_each_is_one_braced_object(tmp_path, monkeypatch, suffix):
    """max_line above a block's size, as in use (1 MiB): blocks then take the path that counts lines."""
    monkeypatch.setattr(dump_lines, "CHUNK_BYTES", 3000)
    good = b"".join(_line(i) for i in range(20))
    cases = {"plain": good, "blank": good + b"\n" + good, "crlf": good.replace(b"\n", b"\r\n"),
             "no final newline": good.rstrip(b"\n"), "long line": good + b"a" * 300_000 + b"\n" + good}
    for name, raw in cases.items():
        path = tmp_path / f"RS_{name.replace(' ', '_')}{suffix}"
        path.write_bytes(zstandard.ZstdCompressor().compress(raw) if suffix == ".zst" else raw)
        chunks = [(bytes(c.data), c.lines, c.braced) for c in dump_lines.read_line_chunks(path, 200_000) if c.data]
        for data, lines, braced in chunks:
            assert lines in (None, data.count(b"\n")), name
            lines_of = data.split(b"\n")[:-1]
            assert braced == (lines is not None and all(line[:1] == b"{" and line[-1:] == b"}" for line in lines_of)), name
        assert any(braced for _, _, braced in chunks) == (name not in ("crlf", "blank")), name  # blank: one chunk


def test_a_line_far_longer_than_the_cap_costs_no_memory_in_proportion(tmp_path):
    """400 MB of 'a' with no newline between good lines: zstd makes it a few KB, the reader must not hold it."""
    path = tmp_path / "RS_endless.zst"
    line_bytes = 400 << 20
    with open(path, "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh) as out:
        out.write(_line(1))
        piece = b"a" * (1 << 20)
        for _ in range(line_bytes // len(piece)):
            out.write(piece)
        out.write(b"\n" + _line(3))
    assert path.stat().st_size < 100_000
    child = textwrap.dedent(f"""
        import json, resource
        from gptcore.corpus.dumps import filter_dump
        from flows.demo.dumpgen import submission_record, write_dump
        warm = write_dump({str(tmp_path / 'RS_warm.zst')!r}, [submission_record("w", "https://example.com/w")])
        filter_dump(warm, workers=2)  # imports, DuckDB, thread pool: not what is measured
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = filter_dump({str(path)!r}, workers=2)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({{"grown_kib": grown, "counts": result.counts, "rejects": result.rejects.to_pylist(),
                           "kept": sorted(i for ids in result.links["submission_ids"].to_pylist() for i in ids)}}))
    """)
    run = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["kept"] == ["s1", "s3"]
    assert [(r["item"], r["reason"]) for r in out["rejects"]] == [("RS_endless.zst:2", "line_too_long")]
    assert f"{line_bytes:,} bytes" in out["rejects"][0]["detail"]
    assert out["counts"]["records_read"] == 3
    # The line is 400 MiB; the reader holds a few 16 MiB chunks at most. 100 MiB is a wide margin either way.
    assert out["grown_kib"] < 100 * 1024, f"peak RSS grew by {out['grown_kib'] / 1024:.0f} MiB"


def test_max_line_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_line_bytes"):
        LinkFilterConfig(max_line_bytes=0)


# ---------------------------------------------------------------------------------------------------------------------
# Damaged input: what decoded before the damage is decided, the tail is one reject


def _zstd_blocks(frame: bytes) -> list[int]:
    """Offsets of the blocks of one zstd frame (RFC 8878 section 3.1.1), read independently of the reader."""
    descriptor = frame[4]
    single = descriptor >> 5 & 1
    offset = 5 + (1 - single) + (0, 1, 2, 4)[descriptor & 3] + (single, 2, 4, 8)[descriptor >> 6]
    blocks = []
    while True:
        header = int.from_bytes(frame[offset:offset + 3], "little")
        blocks.append(offset)
        offset += 3 + (1 if header >> 1 & 3 == 1 else header >> 3)
        if header & 1:
            return blocks


def _decoded_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def test_a_damaged_zstd_block_loses_only_what_comes_after_it_and_counts_the_tail(tmp_path):
    records = [submission(f"s{i}", f"https://example.com/{i}", title=f"title {i} " + "x" * (i % 97))
               for i in range(12_000)]
    thirds = [records[:4000], records[4000:8000], records[8000:]]
    frames = [write_dump(tmp_path / f"part{i}.zst", part).read_bytes() for i, part in enumerate(thirds)]
    blocks = _zstd_blocks(frames[1])
    assert len(blocks) > 10  # several frames of many blocks, like a real dump
    damaged_block = blocks[len(blocks) // 2]
    middle = bytearray(frames[1])
    middle[damaged_block] |= 0b110  # block type 3: reserved, a damaged block by definition
    path = tmp_path / "RS_bad.zst"
    path.write_bytes(frames[0] + bytes(middle) + frames[2])

    result = filter_dump(path, workers=2)

    # what decodes before the damaged block: the first frame, and the second one cut where the block starts
    decodable = b"".join(zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj().decompress(frame)
                         for frame in (frames[0], frames[1][:damaged_block]))
    whole = _decoded_lines(decodable)
    assert 4000 < len(whole) < 8000
    assert _kept_ids(result) == [f"s{i}" for i in range(len(whole))]
    assert result.counts["records_read"] == len(whole)
    damage = _rejects(result, "truncated_dump")
    assert [d["item"] for d in damage] == ["RS_bad.zst"]
    offset, size = len(frames[0]) + damaged_block, path.stat().st_size
    assert f"compressed bytes {offset}-{size} of {size}" in damage[0]["detail"]
    open_line = len(decodable) - len(b"\n".join(whole)) - 1
    assert f"the {open_line:,} decoded bytes of line {len(whole) + 1}" in damage[0]["detail"]
    assert "zstd -t --long=31 RS_bad.zst" in damage[0]["detail"]
    _assert_every_record_accounted(result)


def test_a_damaged_gzip_block_loses_only_what_comes_after_it(tmp_path):
    # Deflate blocks that start at known bytes: a full flush ends each piece on a byte boundary.
    encoder, data, starts = zlib.compressobj(wbits=31), b"", []
    for piece in range(12):
        starts.append(len(data))
        data += encoder.compress(b"".join(_line(i) for i in range(piece * 500, piece * 500 + 500)))
        data += encoder.flush(zlib.Z_FULL_FLUSH)
    data += encoder.flush()
    damaged = bytearray(data)
    damaged[starts[7]] |= 0b110  # block type 3: reserved, an invalid deflate block
    path = tmp_path / "RS_bad.gz"
    path.write_bytes(bytes(damaged))

    result = filter_dump(path, workers=2)

    assert _kept_ids(result) == [f"s{i}" for i in range(7 * 500)]
    assert result.counts["records_read"] == 7 * 500
    detail = _rejects(result, "truncated_dump")[0]["detail"]
    assert f"RS_bad.gz: compressed bytes {starts[7]}-{len(data)} of {len(data)}" in detail
    assert f"lost from line {7 * 500 + 1} on" in detail and "gzip -t RS_bad.gz" in detail
    _assert_every_record_accounted(result)


def test_truncated_zstd_names_the_line_where_the_loss_begins(tmp_path):
    full = write_dump(tmp_path / "full.zst", [submission(f"s{i}", f"https://example.com/{i}") for i in range(5000)])
    cut = tmp_path / "RS_cut.zst"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])

    result = filter_dump(cut)

    kept = _kept_ids(result)
    assert kept == [f"s{i}" for i in range(len(kept))]
    detail = _rejects(result, "truncated_dump")[0]["detail"]
    assert f"lost from line {len(kept) + 1} on" in detail and "truncated download" in detail
    _assert_every_record_accounted(result)
