"""Local text files as documents: whole files, chapters, blank-line blocks, and the files that cannot be used."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gptcore.corpus.extract import decode_body
from gptcore.corpus.records import Page, doc_id_for
from gptcore.corpus.textfiles import iter_text_documents

BOOK = """THE SILENT VALLEY

By A. Writer


Chapter 1

It was late when the train arrived.


Chapter 2

The valley was silent in the morning.

CHAPTER XII.

Nobody knew what had happened to the miller.
"""


def texts(pages: list[Page]) -> list[str]:
    return [decode_body(page.body, page.content_type) for page in pages]


def test_one_document_per_file_with_the_original_bytes(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes("Café crème, déjà vu.\n".encode("latin-1"))
    (page,) = iter_text_documents([str(path)])
    url = f"file://{path.absolute()}#0"
    file_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (page.url, page.doc_id, page.source, page.input) == (url, doc_id_for(f"text:book.txt:{file_sha256}#0"),
                                                                "text", str(path.resolve()))
    assert page.body == path.read_bytes()
    assert page.content_type == "text/plain; charset=cp1252"
    assert texts([page]) == ["Café crème, déjà vu.\n"]


def test_chapter_split_keeps_headings_with_their_chapter(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(BOOK, encoding="utf-8")
    pages = list(iter_text_documents([str(path)], split="chapter"))
    assert [page.url.rsplit("#", 1)[1] for page in pages] == ["0", "1", "2", "3"]
    parts = texts(pages)
    assert parts[0].startswith("THE SILENT VALLEY")
    assert parts[1].startswith("Chapter 1\n") and "train arrived" in parts[1]
    assert parts[3].startswith("CHAPTER XII.") and "miller" in parts[3]
    assert all(page.content_type == "text/plain; charset=utf-8" for page in pages)
    assert len({page.doc_id for page in pages}) == 4


def test_chapter_split_needs_a_numeral_at_the_start_of_a_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("See Chapter 3 for details.\nChapter and verse.\nChapter one\n", encoding="utf-8")
    assert len(list(iter_text_documents([str(path)], split="chapter"))) == 1


def test_blank_lines_split_needs_n_consecutive_blank_lines(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text("first story\n\nstill first\n\n\nsecond story\n \n\t\n\nthird story\n", encoding="utf-8")
    assert texts(list(iter_text_documents([str(path)], split="blank-lines:2"))) == [
        "first story\n\nstill first", "second story", "third story\n"]
    assert len(list(iter_text_documents([str(path)], split="blank-lines:1"))) == 4


def test_directories_expand_to_their_txt_files_in_name_order(tmp_path):
    for name in ("b.txt", "a.txt", "notes.md"):
        (tmp_path / name).write_text(f"text of {name}\n", encoding="utf-8")
    pages = list(iter_text_documents([str(tmp_path)]))
    assert [page.input.rsplit("/", 1)[1] for page in pages] == ["a.txt", "b.txt"]


def test_a_file_given_through_a_symlink_is_named_by_its_resolved_path_as_the_manifest_names_inputs(tmp_path):
    from flows.lineage import input_file

    (tmp_path / "books").mkdir()
    real = tmp_path / "books" / "book.txt"
    real.write_text(BOOK, encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(real)
    (page,) = iter_text_documents([str(tmp_path / "link.txt")])
    assert page.input == str(real.resolve()) == input_file(tmp_path / "link.txt", "text")["path"]


def test_missing_files_and_binary_files_become_rejects(tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    results = list(iter_text_documents([str(tmp_path / "missing.txt"), str(binary), str(empty_dir)]))
    assert [(r["step"], r["reason"]) for r in results] == [
        ("fetch", "file_unreadable"), ("extract", "undecodable"), ("fetch", "no_text_files")]
    assert all(r["source"] == "text" for r in results)


def test_unknown_split_rule_is_an_error_naming_the_accepted_ones():
    with pytest.raises(ValueError, match="blank-lines:N"):
        list(iter_text_documents([], split="paragraph"))


def test_ids_follow_the_file_name_and_content_not_its_folder(tmp_path):
    """A moved or re-cloned folder keeps its document ids (hence its validation split); other files get others."""
    def ids(folder: Path, name: str = "book.txt", text: str = BOOK) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        return [page.doc_id for page in iter_text_documents([str(folder / name)], split="chapter")]

    here = ids(tmp_path / "here")
    assert len(set(here)) == len(here) == 4
    assert ids(tmp_path / "moved" / "elsewhere") == here
    assert not set(ids(tmp_path / "renamed", "other.txt")) & set(here)
    assert not set(ids(tmp_path / "edited", text=BOOK + "\nThe end.\n")) & set(here)


def test_copies_of_one_file_in_two_folders_keep_distinct_ids(tmp_path):
    """Same name and bytes elsewhere: distinct ids, so dedup (not an id clash) decides which copy stays."""
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "book.txt").write_text(BOOK, encoding="utf-8")
    pages = list(iter_text_documents([str(tmp_path / f) for f in ("a", "b", "c")], split="chapter"))
    assert len(pages) == 12 and len({page.doc_id for page in pages}) == 12
    alone = list(iter_text_documents([str(tmp_path / "b")], split="chapter"))
    assert [page.doc_id for page in alone] == [page.doc_id for page in pages[:4]], "the first copy keeps the ids"
