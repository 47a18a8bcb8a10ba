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


def test_documents_have_a_domain_a_utc_fetch_time_and_an_input_the_version_can_open(first_build):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from warcio.archiveiterator import ArchiveIterator

    from gptcore.corpus.urls import host_of
    from gptcore.corpus.warc import DOC_ID_HEADER

    manifest = json.loads((first_build / "manifest.json").read_text())
    docs = pq.read_table(sorted((first_build / "data").glob("*.parquet"))).to_pylist()
    schema = pq.read_schema(next((first_build / "data").glob("*.parquet")))
    assert schema.field("fetched_at").type == pa.timestamp("us", tz="UTC")
    files = {up["path"]: up["kind"] for up in manifest["upstream"] if up["kind"] != "version"}
    reddit = [d for d in docs if d["source"] == "reddit"]
    assert reddit and all(d["domain"] == host_of(d["url"]) == webhosts.BUILD_CORPUS and d["fetched_at"] for d in reddit)
    for doc in reddit:  # the record at the offset is the page, in the published WARC
        assert doc["input"].startswith("warc/") and doc["input"] in manifest["outputs"]
        with open(first_build / doc["input"], "rb") as file:
            file.seek(doc["input_offset"])
            record = next(iter(ArchiveIterator(file)))
        assert record.rec_headers.get_header(DOC_ID_HEADER) == doc["doc_id"]
    texts = [d for d in docs if d["source"] == "text"]
    assert texts and all(d["domain"] is None and files.get(d["input"]) == "text" for d in texts)
    rejects = duckdb.sql(f"select distinct input from read_parquet('{first_build}/rejects/*.parquet')").fetchall()
    for (name,) in rejects:  # a path in the version or an upstream file, never the build's work folder
        assert name in manifest["outputs"] or name in files, name
    assert "dump" in {files[n] for (n,) in rejects if n in files}  # link filtering names the dump it read


def test_the_dataset_card_opens_the_corpus_with_datasets_as_it_is(first_build, tmp_path):
    import datasets

    from flows.store import DataRoot

    manifest = json.loads((first_build / "manifest.json").read_text())
    assert {"README.md", "images/lengths.svg", "images/languages.svg"} <= set(manifest["outputs"])
    DataRoot.from_env(str(first_build.parent.parent)).local_version("corpus", "v0001")  # exactly the listed files
    corpus = datasets.load_dataset(str(first_build), split="train", cache_dir=str(tmp_path))
    assert sorted(zip(corpus["doc_id"], corpus["text"])) == _docs(first_build)
    assert corpus.features["fetched_at"].dtype == "timestamp[us, tz=UTC]"
    rejects = datasets.load_dataset(str(first_build), "rejects", split="train", cache_dir=str(tmp_path))
    assert rejects.num_rows == manifest["counts"]["rejects"]


def test_the_dataset_card_shows_the_manifests_counts(first_build):
    import yaml

    manifest = json.loads((first_build / "manifest.json").read_text())
    counts, readme = manifest["counts"], (first_build / "README.md").read_text()
    front = yaml.safe_load(readme.split("---\n")[1])
    assert front["language"] == ["en"] and front["size_categories"] == ["n<1K"]
    assert _table_rows(readme, "| step | reason | items |") == {
        (*key.split(":"), f"{n:,}") for key, n in counts["rejects_by_reason"].items()}
    data = f"read_parquet('{first_build}/data/*.parquet')"
    domains = duckdb.sql(f"select domain, count(*), sum(n_chars) from {data} where domain is not null group by 1").fetchall()
    assert _table_rows(readme, "| domain | documents | characters |") == {(d, f"{n:,}", f"{c:,}") for d, n, c in domains}
    assert _table_rows(readme, "| language | documents |") == {("en", f"{counts['documents']:,}")}
    for source, c in counts["accounting"].items():
        assert f"| {source} | {c['inputs']:,} | {c['kept']:,} | {c['rejected']:,} |" in readme


def _table_rows(markdown: str, header: str) -> set[tuple[str, ...]]:
    """The rows of the markdown table under ``header``, as tuples of cell texts."""
    lines = markdown.split(header + "\n", 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip("|").split(" | ")))
    return set(rows)


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


def test_next_version_dedups_against_earlier_versions(first_build, demo_inputs, prefect_harness, monkeypatch):
    from prefect.assets import materialize

    from flows.build_corpus import build_corpus
    from flows.cards import lineage_graph

    deps = []

    def recording(asset, **kwargs):
        deps.append(kwargs["asset_deps"])
        return materialize(asset, **kwargs)

    monkeypatch.setattr("flows.stage.materialize", recording)
    root = DataRoot.from_env(str(first_build.parent.parent))
    second = Path(build_corpus(**demo_inputs["params"] | {"dumps": [], "version": "v0002", "data_root": root.url}))
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == 0
    details = duckdb.sql(f"select detail from read_parquet('{second}/rejects/*.parquet') where step='dedup'").fetchall()
    assert details and all("v0001" in d for (d,) in details)
    assert manifest["counts"]["statistics"]["dedup"]["by_kept_version"] == {"v0001": len(details)}
    # The asset event names what the lineage card draws: the text files and the version deduplicated against.
    texts = sorted(Path(p).resolve() for folder in demo_inputs["params"]["texts"] for p in
                   ([folder] if Path(folder).is_file() else Path(folder).glob("*.txt")))
    assert len(deps) == 1 and sorted(deps[0]) == sorted([p.as_uri() for p in texts] + [root.asset_key("corpus", "v0001")])
    nodes, edges = lineage_graph(manifest, root)
    assert len([a for a, b in edges if b == 0]) == len(deps[0])
    assert "corpus v0001" in [n["label"] for n in nodes]
    assert "no documents" in (second / "README.md").read_text()


def test_past_prefects_limit_the_asset_event_names_the_input_folders(tmp_path):
    from flows.stage import upstream_asset_keys

    root = DataRoot.from_env(str(tmp_path))
    upstream = [{"kind": "text", "path": f"/books/{i % 3}/{i}.txt"} for i in range(150)]
    upstream.append({"kind": "version", "stage": "corpus", "version": "v0001"})
    assert upstream_asset_keys(root, upstream) == ["file:///books/0", "file:///books/1", "file:///books/2",
                                                   root.asset_key("corpus", "v0001")]


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


@pytest.mark.parametrize("bad", [{"shard_size": 0}, {"max_links": 0}])
def test_an_empty_shard_size_or_link_cap_is_refused_before_anything_is_read(bad, prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus

    missing = tmp_path / "not-read.zst"  # not even looked for: the parameters are checked first
    with pytest.raises(ValueError, match=f"{next(iter(bad))}=0"):
        build_corpus(dumps=[str(missing)], data_root=str(tmp_path / "data"), **bad)
    assert not (tmp_path / "data").exists()


def test_copies_of_one_text_file_in_two_folders_are_one_document_and_an_exact_duplicate(demo_inputs, prefect_harness,
                                                                                       tmp_path):
    """Text ids come from name and content, not folder: the copy must still get its own id, for dedup to drop it."""
    from flows.build_corpus import build_corpus

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for text in demo_inputs["params"]["texts"]:
            shutil.copy(text, tmp_path / folder / Path(text).name)
    out = Path(build_corpus(texts=[str(tmp_path / "a"), str(tmp_path / "b")], version="copies",
                            process=demo_inputs["params"]["process"], data_root=str(tmp_path / "data")))
    docs, counts = _docs(out), json.loads((out / "manifest.json").read_text())["counts"]
    assert len(docs) == len({doc_id for doc_id, _ in docs}) == counts["documents"] > 0
    assert _rejects(out).get("exact_duplicate") == len(docs), "each copy in b/ is rejected as a duplicate of a/'s"
    assert counts["accounting"]["text"]["inputs"] == counts["accounting"]["text"]["kept"] + counts["accounting"]["text"]["rejected"]
