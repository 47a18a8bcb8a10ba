"""Object storage as the data root: every stage against a real S3-compatible HTTP server (moto, in a subprocess)."""
from __future__ import annotations

import json
import pydoc
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.store import MANIFEST, CorruptVersionError, DataRoot, StoreError
from tests.builders import LENIENT, MODULES

BUCKET = "gptforge-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 in its own process, credentials and endpoint in the environment, one bucket."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        env.setenv("GPTFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the moto S3 server did not start") from None
                    time.sleep(0.2)
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            s3fs.S3FileSystem().mkdir(BUCKET)
            yield f"s3://{BUCKET}"
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("texts")
    for name in MODULES[:10]:
        text = pydoc.render_doc(name, renderer=pydoc.plaintext)
        for part in range(3):
            (folder / f"{name}-{part}.txt").write_text(text[part * 3000:(part + 1) * 3000])
    return [str(folder)]


def test_corpus_tokenizer_and_tokens_are_built_and_published_on_the_object_store(s3_url, texts, prefect_harness):
    from flows.build_corpus import build_corpus
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    url = f"{s3_url}/pipeline"
    corpus = build_corpus(texts=texts, data_root=url, process={"quality": {"min_words": 20, **LENIENT}})
    tokenizer = train_tokenizer(data_root=url, vocab_size=400, holdout_fraction=0.2)
    tokens = tokenize(data_root=url, validation_fraction=0.3)  # ~9 documents: a steady validation loss

    root = DataRoot.from_env(url)
    assert (corpus, tokenizer, tokens) == (f"{url}/corpus/v0001", f"{url}/tokenizer/v0001", f"{url}/tokens/v0001")
    assert [root.versions(stage) for stage in ("corpus", "tokenizer", "tokens")] == [["v0001"]] * 3
    manifest = root.read_manifest("tokens", "v0001")
    assert [(u["stage"], u["version"]) for u in manifest["upstream"]] == [("corpus", "v0001"), ("tokenizer", "v0001")]
    assert manifest["counts"]["tokens"] > 0
    # Work folders lived in the local cache and are gone; what is in the store is exactly what the manifest lists.
    assert all(not root.partial_versions(stage) for stage in ("corpus", "tokenizer", "tokens"))
    stored = {p.removeprefix(f"{tokens.removeprefix('s3://')}/") for p in root.fs.find(tokens)}
    assert stored == set(manifest["outputs"]) | {MANIFEST}
    local = root.local_version("tokens", "v0001")
    assert json.loads((local / "index.json").read_text())["shards"]
    assert root.local_version("tokens", "v0001") == local  # downloaded once

    # Training reads the tokens through the local cache and publishes the run to the store.
    from flows.pretrain import pretrain

    run = pretrain(data_root=url, preset="tiny", train={"max_steps": 100, "warmup_steps": 5, "max_lr": 3e-3,
                   "eval_every": 50, "eval_batches": 2, "checkpoint_every": 50, "batch_size": 8})
    assert run == f"{url}/runs/v0001"
    assert root.read_manifest("runs", "v0001")["counts"]["step"] == 100
    assert (root.local_version("runs", "v0001") / "loss_curve.svg").is_file()

    # Lineage and the champion registry read and write through the store too.
    from flows.cards import format_lineage
    from flows.registry import Registry

    tree = format_lineage(run)
    assert tree.startswith("runs v0001") and "tokens v0001" in tree and "corpus v0001" in tree
    registry = Registry.load(root, "weekly")
    registry.record(root, {"cycle": "weekly-0001", "decision": "promoted", "reason": "no champion yet"},
                    champion={"cycle": "weekly-0001", "pretrain": "v0001"}, dumps={"RS_2019-06.zst": 1})
    assert Registry.load(root, "weekly").as_dict() == registry.as_dict()


def publish_two_files(root: DataRoot, version: str) -> Path:
    from flows.lineage import write_manifest

    work = root.work_dir("corpus", version)
    (work / "data").mkdir(parents=True)
    (work / "data" / "part-00000.parquet").write_bytes(b"not really parquet")
    (work / "notes.txt").write_text("hello")
    write_manifest(work, "corpus", version, {}, [], {"documents": 1})
    return work


def test_a_publish_killed_before_the_manifest_leaves_no_visible_version_and_can_be_redone(s3_url, monkeypatch):
    root = DataRoot.from_env(f"{s3_url}/killed")
    work = publish_two_files(root, "v0001")
    fs = root.fs  # one cached filesystem instance per data root
    original = fs.put_file

    def die_at_the_manifest(lpath, rpath, *args, **kwargs):
        if str(rpath).endswith(MANIFEST):
            raise KeyboardInterrupt("killed")
        return original(lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(fs, "put_file", die_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        root.publish("corpus", "v0001", work)
    monkeypatch.setattr(fs, "put_file", original)
    root.fs.invalidate_cache()
    assert root.fs.exists(f"{root.url}/corpus/v0001/notes.txt")  # the data was uploaded …
    assert root.versions("corpus") == [] and not root.exists("corpus", "v0001")  # … but no version is visible

    root.publish("corpus", "v0001", work)  # the work folder is still there: publishing again completes it
    assert root.versions("corpus") == ["v0001"]
    assert (root.local_version("corpus", "v0001") / "notes.txt").read_text() == "hello"


def test_a_version_changed_in_the_store_is_refused_on_download(s3_url, tmp_path, monkeypatch):
    root = DataRoot.from_env(f"{s3_url}/tampered")
    root.publish("corpus", "v0001", publish_two_files(root, "v0001"))
    with root.fs.open(f"{root.url}/corpus/v0001/notes.txt", "wb") as fh:
        fh.write(b"HELLO")
    monkeypatch.setenv("GPTFORGE_CACHE", str(tmp_path / "fresh-cache"))
    with pytest.raises(CorruptVersionError, match=r"notes.txt has sha256 [0-9a-f]{64}, its manifest records "
                                                  r"[0-9a-f]{64}.*corpus version 'v0001' was modified or damaged"):
        root.local_version("corpus", "v0001")
    assert not list((tmp_path / "fresh-cache").rglob("notes.txt"))  # the damaged download is not kept


def test_a_manifest_edited_in_the_store_is_refused_before_any_download(s3_url, tmp_path, monkeypatch):
    root = DataRoot.from_env(f"{s3_url}/edited-manifest")
    root.publish("corpus", "v0001", publish_two_files(root, "v0001"))
    manifest = root.read_manifest("corpus", "v0001")
    manifest["outputs"]["notes.txt"]["sha256"] = "0" * 64
    with root.fs.open(f"{root.url}/corpus/v0001/{MANIFEST}", "wb") as fh:
        fh.write(json.dumps(manifest).encode())
    monkeypatch.setenv("GPTFORGE_CACHE", str(tmp_path / "fresh-cache"))
    with pytest.raises(CorruptVersionError, match="records checksum [0-9a-f]{64} but its outputs hash to"):
        root.local_version("corpus", "v0001")
    assert not (tmp_path / "fresh-cache").exists()


def test_a_cached_download_damaged_later_is_downloaded_again_on_the_next_read(s3_url, tmp_path, monkeypatch):
    root = DataRoot.from_env(f"{s3_url}/damaged-cache")
    root.publish("corpus", "v0001", publish_two_files(root, "v0001"))
    monkeypatch.setenv("GPTFORGE_CACHE", str(tmp_path / "cache"))
    local = root.local_version("corpus", "v0001")
    intact = (local / "notes.txt").read_text()
    (local / "notes.txt").write_text("HELLO")  # the local copy is damaged, the store is not
    assert root.local_version("corpus", "v0001") == local
    assert (local / "notes.txt").read_text() == intact


def test_a_local_root_gives_its_own_version_folder(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    work = publish_two_files(root, "v0001")
    root.publish("corpus", "v0001", work)
    assert root.local_version("corpus", "v0001") == tmp_path / "corpus" / "v0001"
    with pytest.raises(StoreError, match="not found"):
        root.local_version("corpus", "v0009")
