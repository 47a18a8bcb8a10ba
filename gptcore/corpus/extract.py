"""Page bytes → Unicode → main text and title.

Decoding follows the order a browser uses (WHATWG "encoding sniffing"), then guesses, and never raises: a web
corpus meets every kind of broken page, and one bad byte must not cost the whole document.

Main-text extraction uses Resiliparse's main-content heuristics by default. It was chosen by
`bench/bench_extract.py` against trafilatura (default, fast, precision and recall modes) on real documentation pages:
word-level F1 against the pages' sources was equal or slightly higher, at several times the speed. DCLM
(Li et al. 2024, "DataComp-LM") likewise found resiliparse as good as trafilatura for the quality of models trained
on the text, and much faster. trafilatura stays selectable (`ExtractConfig(extractor="trafilatura")`) so the two can be compared on any corpus.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

import charset_normalizer
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

# Byte-order marks override every declaration (WHATWG: "BOM sniff" runs before the transport-layer charset).
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
# Covers both `<meta charset="x">` and `<meta http-equiv="Content-Type" content="text/html; charset=x">`.
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)
# Browsers look for the meta declaration in the first 1024 bytes; real pages put long <head>s before it, so we
# look further. Cheap, because the regex runs on a bounded prefix.
_META_SCAN_BYTES = 4096
_TITLE_MAX_CHARS = 300
_CP1252_CHAOS_MARGIN = 0.1  # see guess_charset


def _codec_name(label: str) -> str | None:
    """Python codec for a charset label, or None when Python does not know it (the label is then ignored).

    Labels for Latin-1 and ASCII map to windows-1252, as in the WHATWG Encoding Standard: servers declare
    "iso-8859-1" for pages that use the curly quotes and dashes of windows-1252.
    """
    try:
        name = codecs.lookup(label.strip().lower()).name
    except LookupError:
        return None
    if name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"
    # A meta tag cannot truthfully declare UTF-16 (the parser already read it as ASCII); WHATWG says use UTF-8.
    if name.startswith("utf-16"):
        return "utf-8"
    return name


def bom_charset(body: bytes) -> tuple[str, int] | None:
    """(codec, length of the byte-order mark) when the bytes start with a UTF-8 or UTF-16 BOM, else None."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, len(bom)
    return None


def declared_charset(body: bytes, content_type: str | None) -> tuple[str, int] | None:
    """(codec, bytes to skip) from a BOM, the Content-Type header or a `<meta>` charset, in that order; else None."""
    if bom := bom_charset(body):
        return bom
    if content_type:
        match = _HEADER_CHARSET.search(content_type)
        if match and (codec := _codec_name(match.group(1))):
            return codec, 0
    match = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
    if match and (codec := _codec_name(match.group(1).decode("ascii", "replace"))):
        return codec, 0
    return None


def guess_charset(body: bytes) -> str | None:
    """Charset of undeclared bytes: UTF-8 when they decode strictly as UTF-8, else charset_normalizer's guess.

    Strict UTF-8 comes first because it is cheap and almost never accidentally valid for legacy encodings.
    On short Western European text charset_normalizer often ranks windows-1250 or -1257 first with windows-1252
    close behind (French in Latin-1 came out as Baltic); windows-1252 is the browsers' default for undeclared
    legacy pages and far more common on the web, so it wins when its "chaos" is within _CP1252_CHAOS_MARGIN of the
    best. Real Central European or Baltic text has letters that make windows-1252 score far worse (or not appear).
    None: the bytes do not look like text in any encoding (binary data).
    """
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(body)
    best = matches.best()
    if best is None:
        return None
    close_to_best = {m.encoding for m in matches if m.chaos <= best.chaos + _CP1252_CHAOS_MARGIN}
    return "cp1252" if "cp1252" in close_to_best else best.encoding


def decode_body(body: bytes, content_type: str | None) -> str:
    """Decode page bytes to text; never raises on bad bytes (undecodable bytes become U+FFFD).

    Order: BOM, the Content-Type header's charset, `<meta charset>` / http-equiv, strict UTF-8,
    charset_normalizer, then UTF-8 with replacement.
    """
    declared = declared_charset(body, content_type)
    if declared:
        codec, skip = declared
        return body[skip:].decode(codec, errors="replace")
    codec = guess_charset(body) or "utf-8"
    return body.decode(codec, errors="replace")


@dataclass(frozen=True, slots=True)
class ExtractConfig:
    """How main text is pulled out of HTML.

    extractor: "resiliparse" (default; see the module docstring for why) or "trafilatura" (its default settings).
    list_bullets: keep a "•" before list items, so the bullet-line quality filter can see lists (resiliparse only).
    """

    extractor: Literal["resiliparse", "trafilatura"] = "resiliparse"
    list_bullets: bool = True


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str | None
    text: str


def _extract_resiliparse(html: str, config: ExtractConfig) -> Extracted:
    # resiliparse's tree and nodes refuse to be freed on another thread than the one that made them (they leak, with
    # an error). A sampling profiler (Dask's, on every worker) may hold this frame past its return, and then frees
    # its locals on its own thread: so every local that refers to the tree is cleared before the frame ends.
    tree = h1 = None
    try:
        tree = HTMLTree.parse(html)
        text = extract_plain_text(
            tree,
            preserve_formatting=True,  # keep paragraphs and lines: the cleaning and line-level filters need them
            main_content=True,  # drop navigation, sidebars, headers, footers
            list_bullets=config.list_bullets,
            alt_texts=False,  # image alt texts ("Logo", "icon") are not prose
            links=False,
            form_fields=False,
            noscript=False,
        )
        # the title: the `<title>`, else the first `<h1>`
        title = tree.title
        if not title or not title.strip():
            h1 = tree.body.query_selector("h1") if tree.body is not None else None
            title = h1.text if h1 is not None else ""
    finally:
        del tree, h1
    return Extracted(title=" ".join(title.split())[:_TITLE_MAX_CHARS] or None, text=text)


def _extract_trafilatura(html: str) -> Extracted:
    # Imported here: trafilatura is only the alternative extractor, and its import costs ~0.5 s per process.
    import trafilatura

    document = trafilatura.bare_extraction(html, with_metadata=True)
    if document is None:
        return Extracted(title=None, text="")
    title = " ".join((document.title or "").split())[:_TITLE_MAX_CHARS] or None
    return Extracted(title=title, text=document.text or "")


def extract_main_text(html: str, config: ExtractConfig = ExtractConfig()) -> Extracted:
    """Main text (boilerplate removed, paragraphs separated by blank lines) and title of an HTML document."""
    if config.extractor == "trafilatura":
        return _extract_trafilatura(html)
    return _extract_resiliparse(html, config)
