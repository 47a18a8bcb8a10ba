"""Decoding, main-text extraction, cleaning and the per-shard processing unit."""
from __future__ import annotations

import codecs
import datetime as dt
import sys
import threading

from gptcore.corpus.clean import clean_text
from gptcore.corpus import extract
from gptcore.corpus.extract import decode_body, extract_main_text
from gptcore.corpus.process import ProcessConfig, process_pages, process_pages_parallel
from gptcore.corpus.quality import QualityConfig
from gptcore.corpus.records import Page, doc_id_for, reject

FRENCH = "Le café était très agréable, même après la fermeture. Où est la gare? Déjà l'été."

ARTICLE_PARAGRAPHS = [
    "The old lighthouse on the northern cape was switched off for the last time in the spring, after more than a "
    "century of guiding ships past the rocks that had claimed so many vessels before it was built.",
    "Its keeper, who had lived in the small cottage beside the tower for thirty years, said that he would miss the "
    "sound of the sea at night more than anything else, and that the silence of the town would take some getting "
    "used to after so long.",
    "The building will be turned into a museum about the history of the coast, with rooms for the lenses, the logbooks "
    "and the letters that sailors wrote to thank the keepers who had helped them reach the harbour safely.",
]

PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>The last night of the lighthouse</title>
<script>var tracking = "should never appear";</script><style>body {{ color: red; }}</style></head>
<body>
<header><nav class="navigation"><ul>
  <li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li>
  <li><a href="/weather">Weather</a></li><li><a href="/contact">Contact us</a></li>
</ul></nav></header>
<main><article>
<h1>The last night of the lighthouse</h1>
{"".join(f"<p>{p}</p>" for p in ARTICLE_PARAGRAPHS)}
</article></main>
<footer class="footer"><p>Copyright 2024 Coastal News Ltd. All rights reserved.</p>
<ul><li><a href="/privacy">Privacy policy</a></li><li><a href="/cookies">Cookie settings</a></li></ul></footer>
</body></html>"""


FETCHED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def html_page(url: str, html: str, content_type: str | None = "text/html; charset=utf-8") -> Page:
    return Page(doc_id=doc_id_for(url), url=url, body=html.encode("utf-8"), content_type=content_type,
                source="reddit", fetched_at=FETCHED_AT, http_status=200, input="warc/00000.warc.gz", input_offset=512)


# --- decoding ---------------------------------------------------------------------------------------------------

def test_decode_uses_the_content_type_charset():
    assert decode_body(FRENCH.encode("cp1252"), "text/html; charset=windows-1252") == FRENCH


def test_decode_uses_meta_charset_and_http_equiv():
    body = f'<html><head><meta charset="iso-8859-1"></head><body>{FRENCH}</body></html>'.encode("latin-1")
    assert FRENCH in decode_body(body, "text/html")
    body = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=KOI8-R"></head>'
            "<body>Привет, мир</body></html>").encode("koi8-r")
    assert "Привет, мир" in decode_body(body, None)


def test_decode_byte_order_mark_wins_over_the_header():
    assert decode_body(codecs.BOM_UTF8 + "naïve".encode("utf-8"), "text/html; charset=iso-8859-1") == "naïve"
    assert decode_body(codecs.BOM_UTF16_LE + "naïve".encode("utf-16-le"), None) == "naïve"


def test_decode_guesses_latin1_without_a_declaration():
    assert decode_body(FRENCH.encode("latin-1"), "text/html") == FRENCH


def test_decode_ignores_unknown_charsets_and_never_raises_on_garbage():
    assert decode_body("plain".encode(), "text/html; charset=no-such-charset") == "plain"
    garbage = bytes(range(256)) * 4
    assert isinstance(decode_body(garbage, "text/html; charset=utf-8"), str)
    assert isinstance(decode_body(garbage, None), str)
    assert decode_body(b"", None) == ""


# --- extraction --------------------------------------------------------------------------------------------------

def test_extraction_keeps_the_article_and_drops_navigation_footer_and_scripts():
    extracted = extract_main_text(PAGE)
    assert extracted.title == "The last night of the lighthouse"
    for paragraph in ARTICLE_PARAGRAPHS:
        assert paragraph in extracted.text
    for boilerplate in ("Weather", "Contact us", "Copyright", "Privacy policy", "tracking", "color: red"):
        assert boilerplate not in extracted.text
    assert "\n\n" in extracted.text  # paragraphs stay separated


def test_title_falls_back_to_the_first_heading():
    assert extract_main_text("<html><body><h1>Only a heading</h1><p>Some text.</p></body></html>").title \
        == "Only a heading"


# --- cleaning ----------------------------------------------------------------------------------------------------

def test_a_frame_kept_past_extraction_frees_nothing_of_resiliparse_on_another_thread(monkeypatch):
    """Dask's sampling profiler holds worker frames and drops them on its own thread; resiliparse's trees and nodes
    refuse that (they leak, with an error). Here a tracer keeps every extraction frame and another thread drops them."""
    frames, errors = [], []

    def keep_frames(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == extract.__file__:
            frames.append(frame)

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: errors.append(unraisable.exc_value))
    sys.settrace(keep_frames)
    try:
        with_title = extract_main_text("<html><head><title>T</title></head><body><p>Some words.</p></body></html>")
        from_heading = extract_main_text("<html><body><h1>Heading</h1><p>Some words here.</p></body></html>")
    finally:
        sys.settrace(None)
    assert (with_title.title, from_heading.title) == ("T", "Heading") and frames
    dropper = threading.Thread(target=frames.clear)
    dropper.start()
    dropper.join()
    assert errors == []


def test_cleaning_repairs_mojibake_and_entities():
    assert clean_text("The Mona Lisa doesnâ€™t have eyebrows.") == "The Mona Lisa doesn't have eyebrows."
    assert clean_text("Fish &amp; chips") == "Fish & chips"
    assert clean_text("a < b &amp; c") == "a < b &amp; c"  # text with "<" is not unescaped: it may be about markup


def test_cleaning_normalizes_to_nfc_and_drops_control_and_invisible_characters():
    assert clean_text("cafe\u0301 \x07bell\u200b zero\u00adwidth") == "café bell zerowidth"


def test_cleaning_standardizes_whitespace_but_keeps_indentation():
    raw = "  Title\u00a0\u00a0here  \r\n\r\n\r\n\r\nFirst\tparagraph   text.\t \n    indented  code()\n\n\n"
    assert clean_text(raw) == "Title here\n\nFirst paragraph text.\n    indented code()"


def test_cleaning_keeps_case_accents_dashes_and_other_scripts():
    text = "Ελληνικά — Zürich – «quote» 東京 🙂"
    assert clean_text(text) == text


# --- processing --------------------------------------------------------------------------------------------------

def test_process_pages_turns_each_page_into_a_document_or_a_reject():
    german = "<html><body><main>" + "".join(
        "<p>Der alte Leuchtturm am nördlichen Kap wurde im Frühling zum letzten Mal ausgeschaltet, nach mehr als "
        f"hundert Jahren, in denen er Schiffe an den Felsen vorbei geführt hatte. Absatz {i}.</p>" for i in range(3)
    ) + "</main></body></html>"
    passed_through = reject("https://example.org/gone", "reddit", "fetch", "http_404")
    pages = [
        html_page("https://example.org/article", PAGE),
        html_page("https://example.org/de", german),
        html_page("https://example.org/empty", ""),
        html_page("https://example.org/image.png", PAGE, content_type="image/png"),
        html_page("https://example.org/nav", "<html><body><nav>Home</nav></body></html>"),
        html_page("https://example.org/short", "<html><body><p>Too short to keep.</p></body></html>"),
        passed_through,
    ]
    documents, rejects = process_pages(pages, ProcessConfig())
    assert [d["url"] for d in documents] == ["https://example.org/article"]
    document = documents[0]
    assert document["title"] == "The last night of the lighthouse"
    assert document["lang"] == "en" and document["lang_score"] > 0.5
    assert document["n_chars"] == len(document["text"]) and document["n_words"] == len(document["text"].split())
    assert (document["doc_id"], document["http_status"], document["fetched_at"]) == (
        doc_id_for("https://example.org/article"), 200, FETCHED_AT)
    assert (document["input"], document["input_offset"]) == ("warc/00000.warc.gz", 512)
    assert all(r["input"] == "warc/00000.warc.gz" for r in rejects[:-1])
    assert [(r["item"].rsplit("/", 1)[-1], r["step"], r["reason"]) for r in rejects] == [
        ("de", "lang", "lang_not_allowed"),
        ("empty", "extract", "empty_body"),
        ("image.png", "extract", "unsupported_content_type"),
        ("nav", "extract", "no_text"),
        ("short", "quality", "too_few_words"),
        ("gone", "fetch", "http_404"),
    ]
    assert rejects[-1] is passed_through


def test_text_pages_skip_html_extraction_but_are_cleaned_and_filtered():
    text = "A Story\n\n" + "\n\n".join(ARTICLE_PARAGRAPHS) + "\n<b>not markup</b>\u00a0end"
    page = Page(doc_id="t", url="file:///story.txt#0", body=text.encode("utf-8"),
                content_type="text/plain; charset=utf-8", source="text")
    documents, rejects = process_pages([page])
    assert rejects == []
    assert documents[0]["text"].endswith("<b>not markup</b> end")
    assert documents[0]["title"] == "A Story"


def test_page_dicts_are_accepted_like_pages():
    fields = {"doc_id": "d", "url": "https://example.org/a", "body": PAGE.encode(), "content_type": "text/html",
              "source": "warc"}
    documents, _ = process_pages([fields])
    assert documents[0]["source"] == "warc"


def test_parallel_processing_matches_sequential_for_any_worker_count():
    pages = []
    for i in range(40):
        body = PAGE.replace("lighthouse", f"lighthouse number {i}") if i % 3 else "<p>short</p>"
        pages.append(html_page(f"https://example.org/{i}", body))
    config = ProcessConfig(quality=QualityConfig(min_words=20))
    sequential = process_pages(pages, config)
    assert len(sequential[0]) > 0 and len(sequential[1]) > 0
    assert process_pages_parallel(pages, config, workers=2) == sequential
    assert process_pages_parallel(pages, config, workers=3) == sequential
    assert process_pages_parallel(pages, config, workers=1) == sequential


def test_parallel_processing_from_a_threaded_caller_matches_sequential():
    # With other threads running (as under the Prefect engine) workers come from a fork server, not a plain fork.
    pages = [html_page(f"https://example.org/{i}", PAGE.replace("lighthouse", f"tower {i}")) for i in range(6)]
    release = threading.Event()
    background = threading.Thread(target=release.wait)
    background.start()
    try:
        assert process_pages_parallel(pages, workers=2) == process_pages(pages)
    finally:
        release.set()
        background.join()
