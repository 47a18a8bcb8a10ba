"""Local plain-text files as a corpus source (BooksCorpus-style): one document per file, chapter or block.

Split rules (`split=`):
- "file": the whole file is one document, its bytes as they are (charset detected).
- "chapter": a new document starts at every line matching CHAPTER_HEADING, i.e. "CHAPTER" or "Chapter", spaces or
  tabs, then an Arabic or Roman numeral ("Chapter 1", "CHAPTER XIV."). Text before the first heading (title page, contents)
  is its own part, number 0; the chapters are numbered from 1.
- "blank-lines:N": a new document starts after N or more consecutive blank (whitespace-only) lines; parts are
  numbered from 0.

Every document's url is `file://<absolute path>#<part number>` (part 0 for split="file"); its doc_id is
`doc_id_for("text:<file name>:<sha256 of the file>#<part number>")`: not the path, so a folder of books moved or
cloned elsewhere keeps its ids, hence its validation split, while files that differ in name or content never share
one. The second and later copies of the same file (same name and bytes, in other folders) get `~<copy number>` after
the hash, so ids stay unique and dedup rejects the copies as exact duplicates. Its `input` is the file's
`records.source_path`. Whitespace-only parts are skipped
(their numbers are not reused). Split parts are re-encoded as UTF-8. Paths that cannot be read and bytes that are
not text in any encoding become reject rows.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

from gptcore.corpus.extract import bom_charset, guess_charset
from gptcore.corpus.records import Page, doc_id_for, reject, source_path

CHAPTER_HEADING = re.compile(r"^(?:CHAPTER|Chapter)[ \t]+(?:[0-9]+|[IVXLCDM]+)\b", re.MULTILINE)
_BLANK_LINES_SPLIT = re.compile(r"blank-lines:([1-9][0-9]*)")
SOURCE = "text"


def _expand(paths: list[str]) -> Iterator[Path | dict]:
    """Files in argument order; a directory contributes its *.txt files (not recursive) sorted by name."""
    for raw in paths:
        path = Path(raw).absolute()
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                yield reject(str(path), SOURCE, "fetch", "no_text_files",
                             f"directory {path} has no *.txt files", input=source_path(path))
            yield from files
        else:
            yield path


def text_files(paths: list[str]) -> list[Path]:
    """The files ``paths`` name, directories expanded as the reader expands them (for the manifest's inputs)."""
    return [p for p in _expand(paths) if isinstance(p, Path) and p.is_file()]


def _parse_split(split: str) -> re.Pattern[str] | None:
    """The regex that starts a new part, None for whole files; a ValueError names the accepted forms."""
    if split == "file":
        return None
    if split == "chapter":
        return CHAPTER_HEADING
    match = _BLANK_LINES_SPLIT.fullmatch(split)
    if match:
        return re.compile(r"\n(?:[ \t\r\f\v]*\n){%d,}" % int(match.group(1)))
    raise ValueError(f"unknown text split {split!r}: use 'file', 'chapter' or 'blank-lines:N' with N >= 1")


def _split_parts(text: str, split: str, boundary: re.Pattern[str]) -> list[str]:
    """Parts in order: for chapters the text before each heading (headings stay with their chapter)."""
    if split == "chapter":
        starts = [0] + [m.start() for m in boundary.finditer(text)]
        return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return boundary.split(text)


def _page(path: Path, file_key: str, part: int, body: bytes, charset: str) -> Page:
    return Page(doc_id=doc_id_for(f"{file_key}#{part}"), url=f"file://{path}#{part}", body=body,
                content_type=f"text/plain; charset={charset}", source=SOURCE, input=source_path(path))


def iter_text_documents(paths: list[str], split: str = "file") -> Iterator[Page | dict]:
    """Pages (content type text/plain) for every document in the files, or reject rows for unusable files."""
    boundary = _parse_split(split)
    copies: dict[str, int] = {}  # earlier files per (name, sha256): a later copy's ids must differ from theirs
    for item in _expand(paths):
        if isinstance(item, dict):
            yield item
            continue
        path = item
        try:
            body = path.read_bytes()
        except OSError as error:
            yield reject(str(path), SOURCE, "fetch", "file_unreadable", f"{type(error).__name__}: {error}",
                         input=source_path(path))
            continue
        charset, skip = bom_charset(body) or (guess_charset(body), 0)
        if charset is None:
            yield reject(str(path), SOURCE, "extract", "undecodable",
                         f"{path} is not text in any encoding charset_normalizer knows (binary?)", input=source_path(path))
            continue
        file_key = f"text:{path.name}:{hashlib.sha256(body).hexdigest()}"
        copy = copies[file_key] = copies.get(file_key, 0) + 1
        if copy > 1:
            file_key += f"~{copy}"
        if boundary is None:
            yield _page(path, file_key, 0, body, charset)
            continue
        text = body[skip:].decode(charset, errors="replace")
        for part, part_text in enumerate(_split_parts(text, split, boundary)):
            if part_text.strip():
                yield _page(path, file_key, part, part_text.encode("utf-8"), "utf-8")
