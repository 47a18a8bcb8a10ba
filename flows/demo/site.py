"""Build the demo site: real HTML pages that pydoc renders for standard-library modules, wrapped in site chrome.

Nothing can be downloaded and the project ships no copied text, so the demo "web" is made at run time from the one
corpus every machine with Python has: the standard library's docstrings. Each page wraps pydoc's HTML in a nav bar,
a sidebar and a footer, so extraction has boilerplate to remove, and a few pages are near-duplicates of others
(different chrome and timestamp, or a couple of words changed), so deduplication has work to do.

pydoc runs in a child interpreter with a fixed hash seed: its data sections print sets, whose order otherwise
changes from run to run, and importing ~300 modules stays out of the caller's process. The same Python version
gives byte-identical sites.

write_demo_texts gives the "text" source its inputs from the same place: Python's license and pydoc's plain text.
"""
from __future__ import annotations

import hashlib
import html
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import pydoc
import re
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

SITE_NAME = "PyRef Library"
MIRROR_SITE_NAME = "Snake Docs Mirror"
SITE_MANIFEST = "site.json"  # the page list, so a server or dump writer in another process can read the site back

# Pages behind the server's noise endpoints: real pages too, but reached only through that endpoint, so each
# endpoint's outcome (a document or a reject) is predictable and not confused with a page the dump links directly.
ENDPOINT_PAGES = ("flaky", "latin1", "nocharset", "redirect", "private")

# Whole packages left out: importing them has side effects (opens a browser, prints, starts Tk, sets readline's
# completer), they are tests or tooling, or they print this machine's paths and environment.
SKIPPED_PACKAGES = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "distutils",
    "ensurepip", "venv", "pydoc_data", "rlcompleter", "site", "sysconfig", "os", "encodings",
})
MIN_DOC_CHARS = 1_500  # module + public class/function/method docstrings: pages worth extracting
MIN_PAGE_CHARS = 4_000  # pydoc fragment: some modules re-export everything and document nothing themselves
MAX_PAGE_CHARS = 200_000  # keeps a 120-page demo corpus building in about a minute
ADDRESS = re.compile(r"\b(?:0x)?(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{9,16}\b")  # a pointer, as reprs print it


@dataclass(frozen=True, slots=True)
class SitePage:
    """One HTML file of the site."""

    path: str  # URL path below the site root, no leading slash: "docs/argparse.html"
    title: str
    kind: str  # "page" | "near_duplicate" | "endpoint"
    module: str  # the standard-library module whose pydoc text the page carries
    duplicate_of: str | None = None  # near_duplicate: path of the page it copies
    endpoint: str | None = None  # endpoint: the server endpoint that serves it (one of ENDPOINT_PAGES)


def build_site(out_dir: Path, n_pages: int = 120) -> list[SitePage]:
    """Write n_pages pydoc pages, their near-duplicates and the endpoint pages under out_dir, plus site.json."""
    if n_pages < 1:
        raise ValueError(f"n_pages must be at least 1, got {n_pages}")
    out_dir = Path(out_dir)
    rendered = _render_stdlib_docs(n_pages, len(ENDPOINT_PAGES))
    regular, endpoints = rendered["pages"], rendered["endpoints"]
    pages: list[SitePage] = []
    for i, doc in enumerate(regular):
        neighbours = [d["module"] for d in regular[max(0, i - 3):i] + regular[i + 1:i + 4]]
        page = SitePage(f"docs/{doc['module']}.html", doc["title"], "page", doc["module"])
        _write(out_dir / page.path, _wrap(doc, neighbours, SITE_NAME, _timestamp(doc["module"], 0)))
        pages.append(page)
    pages += _write_near_duplicates(out_dir, regular)
    for endpoint, doc in zip(ENDPOINT_PAGES, endpoints):
        folder = "private" if endpoint == "private" else "docs"  # robots.txt disallows /private/
        page = SitePage(f"{folder}/{doc['module']}.html", doc["title"], "endpoint", doc["module"], endpoint=endpoint)
        _write(out_dir / page.path, _wrap(doc, [], SITE_NAME, _timestamp(doc["module"], 0)))
        pages.append(page)
    _write(out_dir / "index.html", _index(pages))
    _write(out_dir / SITE_MANIFEST, json.dumps({"pages": [asdict(p) for p in pages]}, indent=1))
    return pages


def read_site(site_dir: Path) -> list[SitePage]:
    """The pages of a site that build_site wrote."""
    manifest = Path(site_dir) / SITE_MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: build the demo site first (flows.demo.site.build_site)")
    return [SitePage(**p) for p in json.loads(manifest.read_text(encoding="utf-8"))["pages"]]


def page_html_without_charset(site_dir: Path, page: SitePage) -> str:
    """A page's HTML with its <meta charset> removed, for serving it in another encoding."""
    return (Path(site_dir) / page.path).read_text(encoding="utf-8").replace('<meta charset="utf-8">\n', "")


def write_demo_texts(out_dir: Path) -> list[Path]:
    """Local text files for the "text" source: Python's license when installed, and two modules' pydoc text."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stdlib = sysconfig.get_paths()["stdlib"]
    written = []
    license_file = Path(stdlib) / "LICENSE.txt"
    if license_file.is_file():
        written.append(out_dir / "python-license.txt")
        written[-1].write_text(license_file.read_text(encoding="utf-8"), encoding="utf-8")
    for name in ("textwrap", "string"):  # long docstrings whose rendering prints no addresses or sets
        written.append(out_dir / f"{name}.txt")
        text = pydoc.render_doc(name, renderer=pydoc.plaintext).replace(stdlib + "/", "Lib/")  # no machine paths
        written[-1].write_text(text, encoding="utf-8")
    return written


# --- near-duplicates ------------------------------------------------------------------------------------------------

def _write_near_duplicates(out_dir: Path, regular: list[dict]) -> list[SitePage]:
    """Every 20th page again (at least two): alternately under a mirror's chrome, or archived with two words changed."""
    step = max(1, min(20, len(regular) // 2))
    pages = []
    for n, doc in enumerate(regular[::step]):
        original = f"docs/{doc['module']}.html"
        if n % 2 == 0:
            path, body = f"mirror/{doc['module']}.html", _wrap(doc, [], MIRROR_SITE_NAME, _timestamp(doc["module"], 1))
        else:
            edited = dict(doc, html=_change_two_words(doc["html"]))
            path, body = f"archive/2019/{doc['module']}.html", _wrap(edited, [], SITE_NAME, _timestamp(doc["module"], 2))
        _write(out_dir / path, body)
        pages.append(SitePage(path, doc["title"], "near_duplicate", doc["module"], duplicate_of=original))
    return pages


def _change_two_words(fragment: str) -> str:
    """Replace the first two "the" of the text (not of tags): an edit a near-duplicate detector must see through."""
    changed = 0

    def edit_text(match: re.Match) -> str:
        nonlocal changed
        text, n = re.subn(r"\bthe\b", "this", match.group(0), count=2 - changed)
        changed += n
        return text

    return re.sub(r"(?<=>)[^<]+", lambda m: edit_text(m) if changed < 2 else m.group(0), fragment)


# --- page chrome ----------------------------------------------------------------------------------------------------

def _timestamp(module: str, variant: int) -> str:
    """A fixed "last updated" time in May 2019 per module; variants (mirror, archive) get their own."""
    digest = int(hashlib.blake2b(f"{module}/{variant}".encode(), digest_size=4).hexdigest(), 16)
    moment = datetime(2019, 5, 1, tzinfo=timezone.utc) + timedelta(minutes=digest % (30 * 24 * 60))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _wrap(doc: dict, neighbours: list[str], site_name: str, updated: str) -> str:
    """A full page: the pydoc fragment inside the boilerplate of a typical documentation site."""
    module, title = doc["module"], html.escape(doc["title"])
    related = "".join(f'<li><a href="/docs/{m}.html">{m}</a></li>' for m in neighbours)
    minutes = max(1, len(doc["html"]) // 6_000)
    is_mirror = site_name == MIRROR_SITE_NAME
    nav = ("Home", "Mirrors", "Downloads", "FAQ") if is_mirror else ("Home", "Library", "Tutorials", "Blog", "About", "Sign in")
    nav_items = "".join(f'<li><a href="/{"" if n == "Home" else n.lower().replace(" ", "-")}">{n}</a></li>' for n in nav)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} | {site_name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="{title}">
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<div class="cookie-banner">We use cookies to improve your experience. <a href="/privacy">Learn more</a> <button>Accept all</button></div>
<header class="site-header">
<a class="logo" href="/">{site_name}</a>
<nav class="main-nav"><ul>{nav_items}</ul></nav>
<form class="search" action="/search"><input name="q" placeholder="Search the library…"><button>Search</button></form>
</header>
<div class="breadcrumbs"><a href="/">Home</a> › <a href="/docs/">Library</a> › {module}</div>
<div class="layout">
<aside class="sidebar">
<h3>Related modules</h3><ul>{related}</ul>
<h3>Popular</h3><ul><li><a href="/docs/argparse.html">argparse</a></li><li><a href="/docs/json.html">json</a></li><li><a href="/docs/re.html">re</a></li></ul>
<div class="ad">Advertisement · <a href="/advertise">Advertise with us</a></div>
</aside>
<main>
<article>
<h1>{module}</h1>
<p class="meta">Last updated {updated} · {minutes} min read · “{title}”</p>
{doc["html"]}
</article>
<div class="share">Share this page: <a href="/share/twitter">Twitter</a> · <a href="/share/facebook">Facebook</a> · <a href="/share/reddit">Reddit</a></div>
</main>
</div>
<footer class="site-footer">
<p>© 2019 {site_name}. All rights reserved. Documentation text from the Python standard library.</p>
<ul><li><a href="/privacy">Privacy policy</a></li><li><a href="/terms">Terms of use</a></li><li><a href="/cookies">Cookie settings</a></li><li><a href="/rss.xml">RSS</a></li><li><a href="/sitemap.xml">Sitemap</a></li></ul>
<p class="built">Page generated {updated}.</p>
</footer>
</body>
</html>
"""


def _index(pages: list[SitePage]) -> str:
    """The site's home page: a plain list of its library pages (not linked from the dump; a link list is no text)."""
    items = "".join(f'<li><a href="/{p.path}">{html.escape(p.title)}</a></li>' for p in pages if p.kind == "page")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{SITE_NAME}</title>\n</head>\n'
            f"<body>\n<h1>{SITE_NAME}</h1>\n<ul>{items}</ul>\n</body>\n</html>\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- pydoc rendering (child interpreter) ----------------------------------------------------------------------------

def _render_stdlib_docs(n_first: int, n_last: int) -> dict:
    """pydoc HTML of the first n_first and the last n_last suitable modules, rendered by a child interpreter."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONWARNINGS="ignore")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # -P: the caller's working directory must not shadow standard-library modules in the child
    proc = subprocess.run([sys.executable, "-P", "-m", "flows.demo.site", str(n_first), str(n_last)],
                          env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"rendering standard-library pages with pydoc failed:\n{proc.stderr.decode(errors='replace')}")
    return json.loads(proc.stdout)


def _candidate_modules() -> list[str]:
    """Pure-Python standard-library modules and their submodules, sorted, found without importing them."""
    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIPPED_PACKAGES:
            continue
        spec = importlib.util.find_spec(top)
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue
        names.append(top)
        for sub in pkgutil.iter_modules(spec.submodule_search_locations or []):
            if not sub.name.startswith("_"):  # also skips __main__, which runs on import
                names.append(f"{top}.{sub.name}")
    return sorted(names)


def _doc_chars(module) -> int:
    """Characters of docstrings the module itself defines: its own, and its public classes, functions and methods."""
    total = len(inspect.getdoc(module) or "")
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value) or inspect.isclass(value):
            total += len(inspect.getdoc(value) or "")
        if inspect.isclass(value):
            total += sum(len(f.__doc__ or "") for a, f in vars(value).items() if not a.startswith("_") and inspect.isfunction(f))
    return total


def _render(name: str) -> dict | None:
    """pydoc HTML of one module made machine-independent, or None when the module is unsuitable."""
    try:
        module = importlib.import_module(name)
    except Exception:  # optional C extension missing, or a module for another platform: not a candidate here
        return None
    if not (getattr(module, "__file__", None) or "").endswith(".py") or _doc_chars(module) < MIN_DOC_CHARS:
        return None
    fragment = pydoc.html.document(module, name)
    stdlib = sysconfig.get_paths()["stdlib"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    fragment = fragment.replace(f'href="file:{stdlib}/', f'href="https://github.com/python/cpython/blob/{version}/Lib/')
    fragment = fragment.replace(f">{stdlib}/", ">Lib/").replace('<a href=".">index</a>', '<a href="/">index</a>')
    fragment = re.sub(r"(?: |&nbsp;)at(?: |&nbsp;)0x[0-9a-f]+", "", fragment)  # object reprs carry memory addresses
    if ADDRESS.search(fragment):
        return None  # an address printed some other way (e.g. a DLL handle): differs from run to run
    machine_specific = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.expanduser("~")}
    if any(len(m) > 3 and m in fragment for m in machine_specific) or "environ(" in fragment:
        return None  # the module's data prints this machine's paths or environment
    if not MIN_PAGE_CHARS <= len(fragment) <= MAX_PAGE_CHARS:
        return None
    synopsis = pydoc.splitdoc(pydoc.getdoc(module))[0].strip().rstrip(".")
    title = f"{name} — {synopsis}"[:120] if synopsis else name
    return {"module": name, "title": title, "html": fragment}


def _select(names: list[str], count: int) -> list[dict]:
    selected = []
    for name in names:
        if len(selected) == count:
            break
        if (doc := _render(name)) is not None:
            selected.append(doc)
    return selected


def _render_main(n_first: int, n_last: int) -> None:
    """Child side of _render_stdlib_docs: print {"pages": [...], "endpoints": [...]} as JSON on stdout."""
    names = _candidate_modules()
    endpoints = _select(names[::-1], n_last)  # from the end, so they do not depend on n_first
    taken = {d["module"] for d in endpoints}
    pages = _select([n for n in names if n not in taken], n_first)
    if len(pages) < n_first or len(endpoints) < n_last:
        sys.exit(f"only {len(pages)} + {len(endpoints)} suitable standard-library modules, asked for "
                 f"{n_first} + {n_last}: ask for fewer pages")
    sys.stdout.write(json.dumps({"pages": pages, "endpoints": endpoints}))


if __name__ == "__main__":
    _render_main(int(sys.argv[1]), int(sys.argv[2]))
