"""build-corpus end to end against the demo web on 127.0.0.1: accounting, rejects, resume, dedup across versions."""
from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from flows.store import DataRoot
from tests import webhosts
from tests.builders import served_demo_inputs


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    with served_demo_inputs(tmp_path_factory.mktemp("demo"), webhosts.BUILD_CORPUS, n_pages=24) as inputs:
        yield inputs | {"params": inputs["params"] | {"shard_size": 10}}


@pytest.fixture(scope="module")
def first_build(demo_inputs, prefect_harness, tmp_path_factory):
    from flows.build_corpus import build_corpus

    root = tmp_path_factory.mktemp("root")
    params = demo_inputs["params"] | {"version": "v0001", "data_root": str(root)}
    url = build_corpus(**params)
    return Path(url)


def _docs(folder: Path) -> list[tuple]:
    return duckdb.sql(f"select doc_id, text from read_parquet('{folder}/data/*.parquet') order by doc_id").fetchall()


def _rejects(folder: Path) -> dict[str, int]:
    return dict(duckdb.sql(f"select reason, count(*) from read_parquet('{folder}/rejects/*.parquet') group by 1").fetchall())


def test_every_input_item_is_kept_or_rejected_with_a_reason(first_build):
    manifest = json.loads((first_build / "manifest.json").read_text())
    assert manifest["counts"]["documents"] > 10
    for source, c in manifest["counts"]["accounting"].items():
        assert c["inputs"] == c["kept"] + c["rejected"] > 0, source
    assert set(manifest["counts"]["accounting"]) == {"reddit", "text"}


def test_noise_in_the_dump_and_on_the_web_is_rejected_for_the_right_reason(first_build):
    reasons = _rejects(first_build)
    for reason in ("low_score", "self_post", "nsfw", "blocked_domain", "non_page_extension", "malformed_json",
                   "http_404", "http_500", "robots_disallowed", "too_large", "not_html"):
        assert reasons.get(reason, 0) > 0, f"no {reason} reject in {reasons}"
    assert reasons.get("near_duplicate", 0) + reasons.get("exact_duplicate", 0) > 0


def test_tracking_parameter_duplicates_become_one_document_with_all_submissions(first_build):
    n = duckdb.sql(f"select max(len(submission_ids)) from read_parquet('{first_build}/data/*.parquet')").fetchall()[0][0]
    assert n >= 2
    urls = duckdb.sql(f"select url from read_parquet('{first_build}/data/*.parquet') where source = 'reddit'").fetchall()
    assert not any("utm_" in u or "fbclid" in u or "#" in u for (u,) in urls)


def test_raw_responses_and_fetch_log_are_kept(first_build):
    assert list((first_build / "warc").glob("*.warc.gz"))
    log = duckdb.sql(f"select count(*), count(distinct url) from read_parquet('{first_build}/fetch_log.parquet')").fetchall()[0]
    links = duckdb.sql(f"select count(*) from read_parquet('{first_build}/links.parquet')").fetchall()[0][0]
    assert log == (links, links)


def test_corpus_rebuilds_from_its_warc_without_refetching(first_build, demo_inputs, prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus

    warcs = [str(p) for p in sorted((first_build / "warc").glob("*.warc.gz"))]
    rebuilt = Path(build_corpus(warcs=warcs, version="w1", data_root=str(tmp_path), process=demo_inputs["params"]["process"]))
    # Same pages extracted (kept or deduplicated; which near-duplicate wins depends on scores the WARC lacks) …
    assert _extracted_pages(rebuilt) == _extracted_pages(first_build)
    # … and the same text wherever both kept a page.
    both = duckdb.sql(f"""select a.text = b.text from read_parquet('{rebuilt}/data/*.parquet') a
                          join read_parquet('{first_build}/data/*.parquet') b using (doc_id)""").fetchall()
    assert both and all(same for (same,) in both)


def _extracted_pages(folder: Path) -> set[str]:
    return {d for (d,) in duckdb.sql(f"""select doc_id from read_parquet('{folder}/data/*.parquet') where source != 'text'
                                          union all select doc_id from read_parquet('{folder}/rejects/*.parquet')
                                          where step = 'dedup' and source != 'text'""").fetchall()}


def test_next_version_dedups_against_earlier_versions(first_build, demo_inputs, prefect_harness):
    from flows.build_corpus import build_corpus

    root = first_build.parent.parent
    second = Path(build_corpus(**demo_inputs["params"] | {"dumps": [], "version": "v0002", "data_root": str(root)}))
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == 0
    details = duckdb.sql(f"select detail from read_parquet('{second}/rejects/*.parquet') where step='dedup'").fetchall()
    assert details and all("v0001" in d for (d,) in details)
    assert any(u.get("version") == "v0001" for u in manifest["upstream"])


def test_an_earlier_version_whose_dedup_index_was_damaged_is_refused(first_build, demo_inputs, prefect_harness,
                                                                     tmp_path):
    from flows.build_corpus import build_corpus
    from flows.store import CorruptVersionError

    root = tmp_path / "data"
    shutil.copytree(first_build, root / "corpus" / "v0001")
    index = root / "corpus" / "v0001" / "dedup_index.parquet"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(CorruptVersionError, match=r"dedup_index.parquet has sha256 [0-9a-f]{64}, its manifest records"):
        build_corpus(**demo_inputs["params"] | {"dumps": [], "version": "v0002", "data_root": str(root)})
    assert not (root / "corpus" / "v0002").exists()


def test_killed_build_resumes_to_the_same_corpus(first_build, demo_inputs, prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    root = tmp_path / "data"
    params = demo_inputs["params"] | {"version": "v0001"}
    argv = [sys.executable, "-m", "flows.app.cli", "run", "build-corpus"] + [f"-p{k}={json.dumps(v)}" for k, v in params.items()]
    env = os.environ | {"GPTFORGE_DATA": str(root), "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    work = root / "corpus" / ".v0001.partial"
    deadline = time.monotonic() + 120
    while not list(work.glob("fetch/*.log.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "corpus" / "v0001").exists(), "the kill came too late to test resuming"
    done_before = set(p.name for p in work.glob("fetch/*.log.parquet"))
    assert done_before
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].endswith("corpus/v0001")
    assert _docs(root / "corpus" / "v0001") == _docs(first_build)
    assert not work.exists()


def test_unreadable_dump_fails_the_run_naming_the_file_and_publishes_nothing(prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus

    bad = tmp_path / "RS_2019-07.zst"
    bad.write_bytes(b"this is not zstd")
    with pytest.raises(Exception, match="RS_2019-07.zst"):
        build_corpus(dumps=[str(bad)], data_root=str(tmp_path / "data"))
    assert DataRoot.from_env(str(tmp_path / "data")).versions("corpus") == []


def test_resuming_a_version_with_other_parameters_is_refused(demo_inputs, prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus
    from flows.store import StoreError

    root = tmp_path / "data"
    (root / "corpus" / ".v7.partial").mkdir(parents=True)
    (root / "corpus" / ".v7.partial" / "plan.json").write_text(json.dumps({"parameters": {"min_score": 99}, "earlier_versions": []}))
    with pytest.raises(StoreError, match="started with other parameters"):
        build_corpus(texts=demo_inputs["params"]["texts"], version="v7", data_root=str(root))


def test_no_inputs_is_a_clear_error(prefect_harness):
    from flows.build_corpus import build_corpus

    with pytest.raises(ValueError, match="at least one input"):
        build_corpus()
