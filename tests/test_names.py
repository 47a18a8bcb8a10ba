"""One name rule for every name that becomes a path: versions, runs, registries, cycles, fine-tuning task names,
and upstream names read back from manifests. A bad name is refused with an error naming the parameter, the value,
the rule and an example; nothing is ever created outside the data root."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.cards import format_lineage, lineage_graph
from flows.lineage import refused_upstream, upstream_of, walk_lineage, write_manifest
from flows.registry import Registry
from flows.stage import resolve_version, start_version
from flows.store import STAGES, DataRoot, StoreError
from gptcore.names import NAME_RE, check_name

GOOD = ["v0001", "a", "7", "A" * 64, "weekly-0003", "r1.2_x-y", "v1.", "c1-fortunes"]
BAD = ["", ".", "..", "../x", "../../../elsewhere", "a..b", ".hidden", "-v1", "_v1", "v1\n", "\nv1", "v 1", " v1",
       "a/b", "/abs", "a\\b", "C:x", "v1\x00", "\x00", "é", "v\u0661", "ｖ1", "A" * 65, "v1\t", "~", "$HOME"]
HOSTILE = ["../../../elsewhere", "../../elsewhere", "../elsewhere", "..", ".", "/tmp", "a/../../b", "v1\n", "\x00",
           "..\\..\\x", "x" * 300]


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_is_returned_as_it_is(name):
    assert check_name(name, "version") == name


@pytest.mark.parametrize("name", [*BAD, None, 7, b"v1"])
def test_a_bad_name_is_refused_naming_parameter_value_rule_and_example(name):
    with pytest.raises(ValueError) as caught:
        check_name(name, "registry")
    message = str(caught.value)
    assert message.startswith(f"registry {name!r} is not a valid folder name")
    assert "up to 63 letters, digits" in message and "'..'" in message and "e.g. 'v0001'" in message


# --- a data root nested two levels deep, with decoy version folders just outside it ------------------------------

def publish(root: DataRoot, stage: str, version: str, upstream: list[dict] | None = None) -> Path:
    work = root.work_dir(stage, version) / "out"
    work.mkdir(parents=True)
    (work / "data.txt").write_text(f"{stage} {version}\n")
    write_manifest(work, stage, version, {}, upstream or [], {})
    root.publish(stage, version, work)
    return root.local_path / stage / version


def plant_decoy(folder: Path) -> None:
    """A folder that looks like a published version: followed only if a name escapes the data root."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({
        "stage": "DECOY", "version": "DECOY", "checksum": "d" * 64, "created_at": "", "code_version": "",
        "upstream": [], "outputs": {}, "counts": {}}))


@pytest.fixture
def layout(tmp_path):
    """``tmp_path/outer/inner/data`` is the data root; ``elsewhere`` decoys sit at every level above it."""
    root = DataRoot.from_env(str(tmp_path / "outer" / "inner" / "data"))
    publish(root, "corpus", "v0001")
    for above in (tmp_path, tmp_path / "outer", tmp_path / "outer" / "inner"):
        plant_decoy(above / "elsewhere")
    return root, tmp_path


def outside(base: Path, root: DataRoot) -> dict[str, int]:
    """Every path under ``base`` that is not inside the data root, with its size: what must not change."""
    return {str(p): p.stat().st_size for p in base.rglob("*") if root.local_path not in (p, *p.parents)}


def refused_or_done(name: str, call):
    """Run ``call``: a valid name must not be refused; an invalid one must be, with its repr in the message."""
    try:
        result = call()
    except ValueError as error:
        assert not NAME_RE.fullmatch(name), f"{name!r} is valid but was refused: {error}"
        assert repr(name) in str(error)
        return None
    assert NAME_RE.fullmatch(name), f"{name!r} breaks the rule but was accepted"
    return result


def missing_ok(call):
    """A valid name that is not published: the store's own 'not found' error is a fine outcome."""
    def run():
        try:
            return call()
        except StoreError as error:
            assert "not found" in str(error)
            return None
    return run


NAMES = st.one_of(
    st.sampled_from(HOSTILE + BAD + GOOD),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,66}", fullmatch=True),  # near misses: '..' inside, too long
    st.text(alphabet=st.sampled_from(list("aZ09._-/\\\n\x00 é~")), max_size=70),
    st.text(max_size=80),
)
PROPERTY = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(name=NAMES)
def test_data_root_choke_points_refuse_exactly_the_bad_names_and_stay_inside(layout, name):
    root, base = layout
    before = outside(base, root)
    url = refused_or_done(name, lambda: root.version_url("corpus", name))
    if url is not None:
        assert url == f"{root.url}/corpus/{name}"
    refused_or_done(name, lambda: root.exists("corpus", name))
    refused_or_done(name, missing_ok(lambda: root.read_manifest("corpus", name)))
    refused_or_done(name, missing_ok(lambda: root.local_version("corpus", name)))
    refused_or_done(name, missing_ok(lambda: resolve_version(root, "corpus", name, "a test")))
    work = refused_or_done(name, lambda: root.work_dir("tokens", name))
    if work is not None:
        assert work.parent == root.local_path / "tokens"
    version = refused_or_done(name, lambda: start_version.fn(root, "tokens", name, {"p": 1}))
    if version is not None:
        assert (version.work / "plan.json").is_file() and version.work.parent == root.local_path / "tokens"
    refused_or_done(name, lambda: Registry(name).save(root))
    refused_or_done(name, lambda: Registry.load(root, name))
    assert outside(base, root) == before
    assert root.versions("corpus") == ["v0001"]


@PROPERTY
@given(name=NAMES)
def test_lineage_follows_only_upstream_names_that_pass_the_rule(layout, name):
    root, base = layout
    before = outside(base, root)
    entries = [{"kind": "version", "stage": "corpus", "version": name, "checksum": "0" * 64},
               {"kind": "version", "stage": name, "version": "v0001", "checksum": "0" * 64}]
    tokens = root.local_path / "tokens" / "t1"
    if not tokens.exists():
        publish(root, "tokens", "t1")
    (tokens / "manifest.json").write_text(json.dumps({**json.loads((tokens / "manifest.json").read_text()),
                                                      "upstream": entries}))
    assert (refused_upstream(entries[0]) is None) == bool(NAME_RE.fullmatch(name))
    assert (refused_upstream(entries[1]) is None) == (name in STAGES)
    walked = [node for _, node in walk_lineage(tokens)]
    assert all(node.get("stage") != "DECOY" for node in walked)
    refused = [node["entry"] for node in walked if node.get("kind") == "refused"]
    assert refused == [e for e in entries if refused_upstream(e)]
    assert "DECOY" not in format_lineage(tokens)
    nodes, _ = lineage_graph(json.loads((tokens / "manifest.json").read_text()), root)
    assert all("DECOY" not in n["label"] for n in nodes)
    assert outside(base, root) == before


@pytest.mark.parametrize("upstream", [
    {"kind": "version", "stage": "corpus", "version": "../../elsewhere", "checksum": "0" * 64},
    {"kind": "version", "stage": "../../elsewhere", "version": "v0001", "checksum": "0" * 64},
    {"kind": "version", "stage": "corpus", "version": "v0001\n", "checksum": "0" * 64},
    {"kind": "version", "stage": ["corpus"], "version": "v0001", "checksum": "0" * 64},
])
def test_gptforge_lineage_flags_an_upstream_name_that_breaks_the_rule_instead_of_following_it(layout, upstream):
    root, _ = layout
    tokens = publish(root, "tokens", "t1", [upstream])
    text = format_lineage(tokens)
    bad = upstream["version"] if isinstance(upstream["stage"], str) and upstream["stage"] in STAGES else upstream["stage"]
    assert "REFUSED upstream (not followed)" in text and repr(bad) in text
    assert "DECOY" not in text
    with pytest.raises(StoreError, match=r"manifest of tokens t1 names an upstream that is not followed"):
        upstream_of(root, "tokens", "t1", "corpus")


# --- one real flow call per name parameter, with a value that would leave the data root ------------------------

@pytest.fixture
def flow_layout(layout):
    root, base = layout
    publish(root, "tokenizer", "t1", [{"kind": "version", "stage": "corpus", "version": "v0001",
                                       "checksum": root.read_manifest("corpus", "v0001")["checksum"]}])
    (base / "texts").mkdir()
    (base / "texts" / "a.txt").write_text("Some text.\n")
    (base / "dumps").mkdir()
    return root, base


def _flow_calls(base: Path) -> list[tuple[str, str, dict]]:
    """(flow, parameter, keyword arguments) with the hostile value in that parameter."""
    bad = "../../../elsewhere"
    return [
        ("build_corpus", "corpus version", {"texts": [str(base / "texts" / "a.txt")], "version": bad}),
        ("train_tokenizer", "corpus version", {"corpus": bad}),
        ("train_tokenizer", "tokenizer version", {"corpus": "v0001", "version": bad}),
        ("tokenize", "corpus version", {"corpus": bad, "tokenizer": "t1"}),
        ("tokenize", "tokenizer version", {"corpus": "v0001", "tokenizer": bad}),
        ("tokenize", "tokens version", {"corpus": "v0001", "tokenizer": "t1", "version": bad}),
        ("pretrain", "tokens version", {"tokens": bad}),
        ("finetune", "run", {"task": "classification", "train": "x", "test": "x", "pretrained": bad}),
        ("evaluate", "run", {"runs": [bad]}),
        ("pipeline", "pipeline version", {"version": bad}),
        ("pipeline", "finetune task name", {"version": "p1", "finetune": [{"name": bad}]}),
        ("pipeline", "finetune run version", {"version": "p" * 60, "finetune": [{"name": "fortunes"}]}),
        ("retrain", "registry", {"registry": bad, "dumps_dir": str(base / "dumps")}),
    ]


FLOWS = {"build_corpus": "flows.build_corpus", "train_tokenizer": "flows.train_tokenizer",
         "tokenize": "flows.tokenize_corpus", "pretrain": "flows.pretrain", "finetune": "flows.finetune",
         "evaluate": "flows.evaluate", "pipeline": "flows.pipeline", "retrain": "flows.retrain"}


@pytest.mark.parametrize("case", range(len(_flow_calls(Path(".")))),
                         ids=[f"{f}-{p}" for f, p, _ in _flow_calls(Path("."))])
def test_each_flow_refuses_a_name_that_would_leave_the_data_root(flow_layout, prefect_harness, case):
    import importlib

    root, base = flow_layout
    flow_name, what, kwargs = _flow_calls(base)[case]
    flow = getattr(importlib.import_module(FLOWS[flow_name]), flow_name)
    before, published = outside(base, root), {s: root.versions(s) for s in STAGES}
    with pytest.raises(ValueError, match=r"is not a valid folder name") as caught:
        flow(**kwargs, data_root=root.url)
    assert str(caught.value).startswith(what)
    assert outside(base, root) == before
    assert {s: root.versions(s) for s in STAGES} == published


def test_retrain_refuses_a_registry_whose_cycle_names_would_be_too_long(flow_layout, prefect_harness):
    from flows.retrain import retrain

    root, base = flow_layout
    (base / "dumps" / "RS_2019-06.zst").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^retrain cycle .*'r{60}-0001' is not a valid folder name"):
        retrain(dumps_dir=str(base / "dumps"), registry="r" * 60, data_root=root.url)
    assert not (root.local_path / "corpus" / ("r" * 60 + "-0001")).exists()
