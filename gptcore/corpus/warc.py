"""WARC I/O: the fetcher writes the pages it fetched, extraction reads them back (and reads Common Crawl WARCs).

Each fetched page is a ``request`` + ``response`` record pair. The response carries ``WARC-Gptforge-Doc-Id`` so
extraction maps a page back to the Reddit links that named it, whatever URL it was finally served from.

The stored body is the decoded body (after transfer and content decoding). So that the record stays a valid HTTP
message, the headers describing the wire encoding are renamed the way Common Crawl does it
(``Content-Encoding`` -> ``X-Crawler-Content-Encoding``, …) and ``Content-Length`` is set to the stored length.
"""
from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from warcio.archiveiterator import WARCIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from gptcore.corpus.httpbody import media_type
from gptcore.corpus.records import Page, doc_id_for, reject, source_path, utc_timestamp
from gptcore.corpus.urls import normalize_url
from gptcore.files import temp_sibling

DOC_ID_HEADER = "WARC-Gptforge-Doc-Id"
HTML_MEDIA_TYPES = ("text/html", "application/xhtml+xml")
_WIRE_HEADERS = {name: f"X-Crawler-{name}" for name in ("Content-Encoding", "Transfer-Encoding", "Content-Length")}


@dataclass(frozen=True)
class FetchedPage:
    """One successful fetch, as the WARC writer needs it."""

    doc_id: str
    url: str  # final URL, after redirects
    request_headers: list[tuple[str, str]]
    http_version: str  # "HTTP/1.1"
    status: int
    reason: str
    response_headers: list[tuple[str, str]]  # as received
    body: bytes  # decoded body
    fetched_at: str  # ISO 8601 UTC, "...Z"
    ip_address: str | None


class WarcPageWriter:
    """Writes FetchedPages to one gzip WARC that appears at ``path`` only when the writer is closed without error."""

    def __init__(self, path: Path, software: str) -> None:
        self._path, self._software = path, software
        self._tmp_path = temp_sibling(path)

    def __enter__(self) -> WarcPageWriter:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp_path, "wb")
        self._writer = WARCWriter(self._file, gzip=True, warc_version="1.1")
        info = {"software": self._software, "format": "WARC File Format 1.1", "description": "pages linked from Reddit"}
        self._writer.write_record(self._writer.create_warcinfo_record(self._path.name, info))
        return self

    def write(self, page: FetchedPage) -> None:
        parts = urlsplit(page.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = self._writer.create_warc_record(
            page.url,
            "request",
            payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders(
                f"GET {target} {page.http_version}", page.request_headers, is_http_request=True
            ),
            warc_headers_dict={"WARC-Date": page.fetched_at},
        )
        stored_headers = [(_WIRE_HEADERS.get(_title(k), k), v) for k, v in page.response_headers]
        stored_headers.append(("Content-Length", str(len(page.body))))
        warc_headers = {"WARC-Date": page.fetched_at, DOC_ID_HEADER: page.doc_id}
        if page.ip_address:
            warc_headers["WARC-IP-Address"] = page.ip_address
        response = self._writer.create_warc_record(
            page.url,
            "response",
            payload=io.BytesIO(page.body),
            http_headers=StatusAndHeaders(f"{page.status} {page.reason}", stored_headers, protocol=page.http_version),
            warc_headers_dict=warc_headers,
        )
        self._writer.write_request_response_pair(request, response)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp_path, self._path)
        else:
            self._tmp_path.unlink(missing_ok=True)


def _title(header_name: str) -> str:
    return "-".join(part.capitalize() for part in header_name.split("-"))


class WarcReadError(Exception):
    """A file that cannot be read as a WARC at all."""


def read_warc(path: str | Path, source: str = "warc", input_name: str | None = None) -> Iterator[Page | dict]:
    """Yield a Page per usable HTML response record of a WARC (``.warc`` or ``.warc.gz``), a reject row otherwise.

    Usable: HTTP status 200 and an HTML content type. The doc_id is the ``WARC-Gptforge-Doc-Id`` header when the
    fetcher wrote the file, else the id of the normalized target URI (Common Crawl and other crawlers' WARCs).
    warcinfo, request and metadata records are not items and are skipped. A file cut short yields what was
    readable and then one ``truncated_warc`` reject; a file with no readable record raises WarcReadError.
    Pages and rejects name the file ``input_name`` (default: ``records.source_path(path)``); pages also carry their
    record's offset in it.
    """
    path = Path(path)
    input_name = input_name or source_path(path)
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise WarcReadError(f"cannot open WARC file {path}: {exc}; check the path and its permissions") from exc
    with file:
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        records = WARCIterator(file)
        complete = 0
        try:
            for record in records:
                item = _item_from_record(record, source, input_name, records.offset)
                if not _read_to_end(record):
                    break
                complete += 1
                if item is not None:
                    yield item
        # warcio raises AttributeError when a record header is cut before WARC-Type or WARC-Target-URI.
        except (ArchiveLoadFailed, EOFError, zlib.error, OSError, ValueError, AttributeError) as exc:
            if complete == 0:
                raise WarcReadError(
                    f"{path} is not a readable WARC file ({type(exc).__name__}: {exc}); "
                    "pass a .warc or .warc.gz file as written by a crawler or by build-corpus"
                ) from exc
        if records.offset < size:
            if complete == 0:
                raise WarcReadError(
                    f"{path} holds no complete WARC record; pass a .warc or .warc.gz file as written by a crawler "
                    "or by build-corpus, or fetch it again if the download was cut short"
                )
            detail = f"file ends inside a record, at byte {size}, after {complete} complete records"
            yield reject(input_name, source, "extract", "truncated_warc", detail=detail, input=input_name)


def _read_to_end(record: ArcWarcRecord) -> bool:
    """Consume the rest of the record; False when it is cut off: no valid Content-Length, or fewer bytes than it."""
    if not (record.rec_headers.get_header("Content-Length") or "").strip().isdigit():
        return False
    while record.raw_stream.read(1 << 16):
        pass
    return getattr(record.raw_stream, "limit", None) == 0  # warcio's LimitReader counts down to 0


def _item_from_record(record: ArcWarcRecord, source: str, input_name: str, offset: int) -> Page | dict | None:
    """The Page or reject row for one record, None for records that are not pages (warcinfo, request, …)."""
    if record.rec_type not in ("response", "revisit"):
        return None
    uri = record.rec_headers.get_header("WARC-Target-URI") or ""

    def rejected(reason: str, detail: str, doc_id: str | None = None) -> dict:
        return reject(uri, source, "extract", reason, detail=detail, input=input_name, doc_id=doc_id)

    doc_id = record.rec_headers.get_header(DOC_ID_HEADER)
    if doc_id is None:
        normalized = normalize_url(uri)
        if normalized is None:
            return rejected("bad_url", f"WARC-Target-URI {uri!r} is not a fetchable http(s) URL")
        doc_id = doc_id_for(normalized)
    if record.rec_type == "revisit":
        return rejected("revisit", "revisit record: the crawler stored no body, only a reference", doc_id)
    if record.http_headers is None:
        return rejected("not_http", f"response record without HTTP headers ({record.content_type})", doc_id)
    status_text = record.http_headers.get_statuscode()
    if status_text != "200":
        return rejected(f"http_{status_text}", f"HTTP status {record.http_headers.statusline!r}", doc_id)
    content_type = record.http_headers.get_header("Content-Type")
    if media_type(content_type) not in HTML_MEDIA_TYPES:
        return rejected("not_html", f"Content-Type {content_type!r}", doc_id)
    return Page(
        doc_id=doc_id,
        url=uri,
        body=record.content_stream().read(),
        content_type=content_type,
        source=source,
        fetched_at=utc_timestamp(record.rec_headers.get_header("WARC-Date")),
        http_status=200,
        input=input_name,
        input_offset=offset,
    )
