"""WARC writing (the fetcher's pages) and reading (ours and Common-Crawl-style files)."""
from __future__ import annotations

import datetime as dt
import io
import random
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from gptcore.corpus.records import Page, doc_id_for
from gptcore.corpus.urls import normalize_url
from gptcore.corpus.warc import DOC_ID_HEADER, FetchedPage, WarcPageWriter, WarcReadError, read_warc

HTML = b"<html><body><p>Stored as received.</p></body></html>"


def fetched(doc_id: str, url: str, body: bytes = HTML, headers: list[tuple[str, str]] | None = None) -> FetchedPage:
    return FetchedPage(
        doc_id=doc_id,
        url=url,
        request_headers=[("Host", "example.com"), ("User-Agent", "gptforge-test")],
        http_version="HTTP/1.1",
        status=200,
        reason="OK",
        response_headers=headers or [("Content-Type", "text/html; charset=utf-8")],
        body=body,
        fetched_at="2024-05-01T12:00:00Z",
        ip_address="93.184.215.14",
    )


def test_written_pages_read_back_with_doc_id_body_and_provenance(tmp_path):
    path = tmp_path / "out.warc.gz"
    with WarcPageWriter(path, software="gptforge-test") as warc:
        warc.write(fetched("doc-a", "https://example.com/a"))
        warc.write(fetched("doc-b", "https://example.com/b?q=1", body="é".encode("latin-1") + HTML))

    pages = list(read_warc(path, source="reddit"))

    assert [(p.doc_id, p.url, p.body) for p in pages] == [
        ("doc-a", "https://example.com/a", HTML),
        ("doc-b", "https://example.com/b?q=1", b"\xe9" + HTML),
    ]
    fetched_at = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    assert all(p.source == "reddit" and p.fetched_at == fetched_at and p.http_status == 200 for p in pages)
    assert pages[0].input == str(path.resolve())


@pytest.mark.parametrize("name", ["out.warc.gz", "out.warc"])
def test_each_page_names_its_input_and_the_offset_its_record_can_be_read_back_from(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".gz"):
        with WarcPageWriter(path, software="gptforge-test") as warc:
            for i in range(3):
                warc.write(fetched(f"doc-{i}", f"https://example.com/{i}", body=HTML + bytes([65 + i])))
    else:
        three_page_warc(path, gzip=False)

    pages = list(read_warc(path, input_name="warc/shard.warc.gz"))

    assert len(pages) == 3 and {p.input for p in pages} == {"warc/shard.warc.gz"}
    with open(path, "rb") as file:
        for page in pages:
            file.seek(page.input_offset)
            record = next(iter(ArchiveIterator(file)))
            assert (record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()) == (
                page.url, page.body)


@pytest.mark.parametrize("warc_date, expected", [
    ("2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
    ("2024-05-01T12:00:00.250000Z", dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)),
    ("2024-05-01T14:00:00+02:00", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
    ("2024-05-01T12:00:00", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),  # WARC dates are UTC
    ("yesterday", None),  # a bad date in someone's WARC costs the date, not the page
])
def test_warc_date_becomes_a_utc_timestamp(tmp_path, warc_date, expected):
    path = tmp_path / "dated.warc"
    with open(path, "wb") as file:
        writer = WARCWriter(file, gzip=False)
        record = http_response(writer, "https://example.com/", "200 OK", "text/html")
        record.rec_headers.replace_header("WARC-Date", warc_date)
        writer.write_record(record)

    [page] = list(read_warc(path))

    assert page.fetched_at == expected


def test_decoded_body_is_stored_with_wire_encoding_headers_renamed_and_valid_digests(tmp_path):
    path = tmp_path / "out.warc.gz"
    wire_headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Content-Length", "40"),
                    ("Transfer-Encoding", "chunked")]
    with WarcPageWriter(path, software="gptforge-test") as warc:
        warc.write(fetched("doc-a", "https://example.com/a", headers=wire_headers))

    with open(path, "rb") as file:
        records = [(r.rec_type, r.rec_headers, r.http_headers, r.content_stream().read())
                   for r in ArchiveIterator(file, check_digests="raise")]

    assert sorted(kind for kind, *_ in records) == ["request", "response", "warcinfo"]
    [(_, warc_headers, http_headers, body)] = [record for record in records if record[0] == "response"]
    assert body == HTML
    assert warc_headers.get_header(DOC_ID_HEADER) == "doc-a"
    assert warc_headers.get_header("WARC-IP-Address") == "93.184.215.14"
    assert http_headers.get_header("Content-Encoding") is None and http_headers.get_header("Transfer-Encoding") is None
    assert http_headers.get_header("X-Crawler-Content-Encoding") == "gzip"
    assert http_headers.get_header("Content-Length") == str(len(HTML))


def test_writer_leaves_no_file_behind_when_interrupted(tmp_path):
    path = tmp_path / "out.warc.gz"
    with pytest.raises(KeyboardInterrupt):
        with WarcPageWriter(path, software="gptforge-test") as warc:
            warc.write(fetched("doc-a", "https://example.com/a"))
            raise KeyboardInterrupt

    assert list(tmp_path.iterdir()) == []


def http_response(writer: WARCWriter, uri: str, status: str, content_type: str, body: bytes = HTML):
    headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=headers)


def write_crawler_warc(path: Path, gzip: bool) -> None:
    """A Common-Crawl-like WARC: no doc-id header, request/metadata records, failures and non-pages mixed in."""
    with open(path, "wb") as file:
        writer = WARCWriter(file, gzip=gzip)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "some-crawler"}))
        request = writer.create_warc_record(
            "https://Example.com/page?utm_source=x", "request", payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders("GET /page HTTP/1.1", [("Host", "example.com")], is_http_request=True))
        response = http_response(writer, "https://Example.com/page?utm_source=x", "200 OK", "text/html; charset=utf-8")
        writer.write_request_response_pair(request, response)
        writer.write_record(writer.create_warc_record(
            "https://example.com/page", "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"),
            warc_content_type="application/warc-fields"))
        writer.write_record(http_response(writer, "https://example.com/gone", "404 Not Found", "text/html"))
        writer.write_record(http_response(writer, "https://example.com/logo.png", "200 OK", "image/png", b"\x89PNG"))
        writer.write_record(writer.create_revisit_record(
            "https://example.com/again", digest="sha1:AAAA", refers_to_uri="https://example.com/page",
            refers_to_date="2024-01-01T00:00:00Z"))
        writer.write_record(writer.create_warc_record(
            "dns:example.com", "response", payload=io.BytesIO(b"example.com. 60 IN A 93.184.215.14"),
            warc_content_type="text/dns"))


@pytest.mark.parametrize("name", ["crawl.warc.gz", "crawl.warc"])
def test_crawler_warc_gives_one_item_per_response_record_and_skips_the_rest(tmp_path, name):
    path = tmp_path / name
    write_crawler_warc(path, gzip=name.endswith(".gz"))

    items = list(read_warc(path))

    [page] = [item for item in items if isinstance(item, Page)]
    assert page.doc_id == doc_id_for(normalize_url("https://Example.com/page?utm_source=x"))
    assert (page.body, page.content_type, page.source) == (HTML, "text/html; charset=utf-8", "warc")
    rejects = {item["item"]: item for item in items if isinstance(item, dict)}
    assert {uri: r["reason"] for uri, r in rejects.items()} == {
        "https://example.com/gone": "http_404",
        "https://example.com/logo.png": "not_html",
        "https://example.com/again": "revisit",
        "dns:example.com": "bad_url",
    }
    assert all(r["step"] == "extract" and r["input"] == str(path.resolve()) for r in rejects.values())
    assert rejects["https://example.com/gone"]["doc_id"] == doc_id_for(normalize_url("https://example.com/gone"))


def three_page_warc(path: Path, gzip: bool) -> bytes:
    with open(path, "wb") as file:
        writer = WARCWriter(file, gzip=gzip)
        for i in range(3):
            body = HTML + random.Random(i).randbytes(4000)  # incompressible: the last 1000 bytes are inside it
            writer.write_record(http_response(writer, f"https://example.com/{i}", "200 OK", "text/html", body))
    return path.read_bytes()


@pytest.mark.parametrize("name", ["cut.warc.gz", "cut.warc"])
def test_truncated_warc_gives_the_complete_records_and_one_truncated_warc_reject(tmp_path, name):
    path = tmp_path / name
    data = three_page_warc(path, gzip=name.endswith(".gz"))
    path.write_bytes(data[: len(data) - 1000])

    items = list(read_warc(path))

    assert [type(item).__name__ for item in items] == ["Page", "Page", "dict"]
    assert [page.url for page in items[:2]] == ["https://example.com/0", "https://example.com/1"]
    assert items[2]["reason"] == "truncated_warc" and items[2]["item"] == items[2]["input"] == str(path.resolve())


def test_file_that_is_not_a_warc_raises_an_error_naming_it(tmp_path):
    path = tmp_path / "notes.warc"
    path.write_text("these are my notes, not a web archive\n")

    with pytest.raises(WarcReadError, match="notes.warc.*not a readable WARC"):
        list(read_warc(path))


def test_missing_file_raises_an_error_naming_it(tmp_path):
    with pytest.raises(WarcReadError, match="missing.warc.gz"):
        list(read_warc(tmp_path / "missing.warc.gz"))
