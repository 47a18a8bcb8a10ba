"""Write Pushshift-style submission dumps: NDJSON compressed with zstd using a long (2 GiB) window, like real RS_*.zst."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import orjson
import zstandard

LONG_WINDOW_LOG = 31  # real dumps are written with `zstd --long=31`: readers need max_window_size=2**31


def submission_record(id: str, url: str, score: int = 10, subreddit: str = "programming", created_utc: int = 1_700_000_000,
                      is_self: bool = False, over_18: bool = False, title: str = "", **extra) -> dict:
    """A submission with the fields real dumps carry (a subset of the ~100; readers must ignore the rest)."""
    domain = "self." + subreddit if is_self else url.split("//", 1)[-1].split("/", 1)[0].lower()
    rec = {
        "id": id, "name": "t3_" + id, "url": url, "domain": domain, "score": score, "ups": score, "downs": 0,
        "num_comments": max(0, score // 3), "is_self": is_self, "over_18": over_18, "created_utc": created_utc,
        "subreddit": subreddit, "subreddit_id": "t5_2fwo", "title": title or f"submission {id}",
        "permalink": f"/r/{subreddit}/comments/{id}/", "selftext": "some text" if is_self else "", "stickied": False,
        "author": "someone", "archived": False, "locked": False, "spoiler": False, "is_video": False,
        "thumbnail": "default", "gilded": 0, "retrieved_on": created_utc + 86_400,
    }
    rec.update(extra)
    return rec


def write_dump(path: str | Path, records: Iterable[dict | bytes], level: int = 3, long_window: bool = True) -> Path:
    """Write records (dicts, or raw bytes lines to plant malformed input) as zstd NDJSON."""
    path = Path(path)
    params = zstandard.ZstdCompressionParameters.from_level(level, window_log=LONG_WINDOW_LOG, enable_ldm=True) if long_window \
        else zstandard.ZstdCompressionParameters.from_level(level)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    with open(path, "wb") as fh, cctx.stream_writer(fh) as out:
        for rec in records:
            out.write((rec if isinstance(rec, bytes) else orjson.dumps(rec)) + b"\n")
    return path
