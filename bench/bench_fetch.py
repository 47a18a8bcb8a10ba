"""Benchmark: fetch_to_warc against a plain httpx.AsyncClient + warcio loop, on a loopback web of real pages.

A server subprocess serves the real HTML pages under $GPTFORGE_SHARED_DATA/web/html on 16 loopback ports (16 origins,
so the per-host limit is not the bottleneck), HTTP/1.1 keep-alive. Both clients fetch the same URLs with the same
total concurrency and write a gzip WARC:

- peer: httpx.AsyncClient.get + warcio, no SSRF guard, no robots.txt, no size cap, no per-host limit, no retries;
- ours: fetch_to_warc with its defaults (robots.txt on, per-host limit 4, guard with 127.0.0.1 allowed).

It prints pages/s for each and the ratio. Then each fetches one gzip bomb (a small response that inflates to
512 MiB) with a 5 MiB cap: the peer reads httpx's decoded stream and stops past the cap, ours uses max_body_bytes.
It prints the peak Python memory (tracemalloc) each needed to refuse it.

    .venv/bin/python bench/bench_fetch.py [--urls 3000] [--concurrency 64]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gptcore.corpus.fetch import FetchConfig, fetch_to_warc  # noqa: E402

OUT = REPO / "bench" / "out"
SHARED = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
N_ORIGINS = 16
CAP = 5 * 1024 * 1024
BOMB_MIB = 512


def serve(root: Path, ports_file: Path) -> None:
    """Serve ``root`` on N_ORIGINS loopback ports (plus /bomb, a gzip bomb); write the ports to ``ports_file``."""
    import threading

    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    bomb_bytes = b"".join(bomb.compress(zeros) for _ in range(BOMB_MIB)) + bomb.flush()

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/bomb":
                self.send_response(200)
                for name, value in (("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                    ("Content-Length", str(len(bomb_bytes)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(bomb_bytes)
                return
            self.path = self.path.split("?", 1)[0]
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # clients hanging up on the bomb are expected

    servers = [QuietServer(("127.0.0.1", 0), partial(Handler, directory=str(root))) for _ in range(N_ORIGINS)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports_file.write_text(" ".join(str(s.server_address[1]) for s in servers))
    threading.Event().wait()


async def peer_fetch(urls: list[tuple[str, str]], warc_path: Path, concurrency: int) -> int:
    """What a careful script would write with httpx and warcio directly."""
    import io

    import httpx
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    semaphore = asyncio.Semaphore(concurrency)
    written = 0
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)
    with open(warc_path, "wb") as file:
        writer = WARCWriter(file, gzip=True)
        async with httpx.AsyncClient(timeout=20, follow_redirects=True, limits=limits) as client:

            async def one(doc_id: str, url: str) -> None:
                nonlocal written
                async with semaphore:
                    response = await client.get(url)
                if response.status_code == 200 and response.headers.get("content-type", "").startswith("text/html"):
                    headers = [(k.decode(), v.decode()) for k, v in response.headers.raw
                               if k.lower() != b"content-encoding"]
                    record = writer.create_warc_record(
                        url, "response", payload=io.BytesIO(response.content),
                        http_headers=StatusAndHeaders(f"200 {response.reason_phrase}", headers, protocol="HTTP/1.1"),
                        warc_headers_dict={"WARC-Gptforge-Doc-Id": doc_id})
                    writer.write_record(record)
                    written += 1

            await asyncio.gather(*(one(doc_id, url) for doc_id, url in urls))
    return written


async def peer_bomb(url: str) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=20) as client, client.stream("GET", url) as response:
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > CAP:
                return "too_large"
    return "kept"


def bomb_peak_mib(which: str, url: str) -> tuple[str, float]:
    """(outcome, peak MiB of Python allocations) for refusing the bomb at ``url``."""
    tracemalloc.start()
    try:
        if which == "peer":
            outcome = asyncio.run(peer_bomb(url))
        else:
            config = FetchConfig(allow_hosts=("127.0.0.1",), max_body_bytes=CAP, respect_robots=False)
            outcome = fetch_to_warc([("bomb", url)], OUT / "bomb.warc.gz", config).column("error")[0].as_py()
        return outcome, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="each client runs this many times; the best counts")
    parser.add_argument("--serve", nargs=2, metavar=("ROOT", "PORTS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return

    html_root = SHARED / "web" / "html"
    pages = sorted(p.relative_to(html_root).as_posix() for p in html_root.rglob("*.html"))
    if not pages:
        sys.exit(f"no HTML pages under {html_root}; set GPTFORGE_SHARED_DATA to the shared data folder")
    OUT.mkdir(parents=True, exist_ok=True)
    ports_file = OUT / "fetch_ports.txt"
    ports_file.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(html_root), str(ports_file)])
    try:
        while not ports_file.exists() or not ports_file.read_text():
            time.sleep(0.05)
        ports = [int(p) for p in ports_file.read_text().split()]
        urls = [(f"d{i}", f"http://127.0.0.1:{ports[i % len(ports)]}/{pages[i % len(pages)]}?n={i}")
                for i in range(args.urls)]
        total_bytes = sum((html_root / pages[i % len(pages)]).stat().st_size for i in range(args.urls))
        print(f"{len(urls)} URLs over {len(ports)} loopback origins, {len(pages)} distinct real pages, "
              f"{total_bytes / 2**20:.0f} MiB in total, concurrency {args.concurrency}")

        config = FetchConfig(allow_hosts=("127.0.0.1",), concurrency=args.concurrency)
        best = {"peer": float("inf"), "ours": float("inf")}
        for _ in range(args.rounds):
            start = time.perf_counter()
            peer_pages = asyncio.run(peer_fetch(urls, OUT / "peer.warc.gz", args.concurrency))
            best["peer"] = min(best["peer"], time.perf_counter() - start)
            start = time.perf_counter()
            log = fetch_to_warc(urls, OUT / "ours.warc.gz", config)
            best["ours"] = min(best["ours"], time.perf_counter() - start)
        our_pages = log.column("error").null_count
        if our_pages != peer_pages or our_pages != len(urls):
            sys.exit(f"page counts differ: peer {peer_pages}, ours {our_pages}, URLs {len(urls)}")
        for name in ("peer", "ours"):
            print(f"  {name:4s}: {best[name]:6.2f} s  {len(urls) / best[name]:7.0f} pages/s  "
                  f"{total_bytes / 2**20 / best[name]:6.1f} MiB/s")
        print(f"  ratio ours/peer throughput: {best['peer'] / best['ours']:.2f}x")

        bomb_url = f"http://127.0.0.1:{ports[0]}/bomb"
        print(f"gzip bomb ({BOMB_MIB} MiB inflated) with a {CAP >> 20} MiB cap: peak Python memory to refuse it")
        results = {name: bomb_peak_mib(name, bomb_url) for name in ("peer", "ours")}
        for name, (outcome, mib) in results.items():
            print(f"  {name:4s}: {outcome:9s} {mib:6.1f} MiB")
        print(f"  ratio peer/ours peak memory: {results['peer'][1] / results['ours'][1]:.1f}x")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
