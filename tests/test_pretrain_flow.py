"""pretrain end to end on real text: the run is gated against the unigram baseline, resumable, and samples."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.store import DataRoot
from tests.builders import TINY_TRAIN, publish_tokens

TRAIN = TINY_TRAIN


@pytest.fixture(scope="module")
def tokens_root(tmp_path_factory, prefect_harness) -> DataRoot:
    return publish_tokens(DataRoot.from_env(str(tmp_path_factory.mktemp("data"))))


def test_a_run_beats_the_unigram_baseline_and_records_its_lineage(tokens_root, prefect_harness):
    from flows.pretrain import pretrain

    run = Path(pretrain(version="r1", data_root=tokens_root.url, preset="tiny", train=TRAIN))
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["step"] == 40 and counts["val_loss"] < counts["unigram_entropy"]
    assert (run / counts["checkpoint"]).is_file() and (run / "metrics.jsonl").is_file()
    upstream = json.loads((run / "manifest.json").read_text())["upstream"]
    assert [u["version"] for u in upstream] == ["k1"]


def test_too_little_training_fails_the_gate_and_publishes_nothing(tokens_root, prefect_harness):
    from data_contracts.gate import GateFailed
    from flows.pretrain import pretrain

    with pytest.raises(GateFailed, match="unigram_entropy"):
        pretrain(version="r0", data_root=tokens_root.url, preset="tiny",
                 train={**TRAIN, "max_steps": 1, "warmup_steps": 1, "max_lr": 1e-6})
    assert "r0" not in tokens_root.versions("runs")


def test_generate_continues_a_prompt_with_the_runs_tokenizer(tokens_root, prefect_harness):
    from flows.pretrain import pretrain
    from flows.sample import sample_from_run

    run = pretrain(version="r2", data_root=tokens_root.url, preset="tiny", train=TRAIN)
    text = sample_from_run(run, "Return the", max_new_tokens=20, seed=1)
    assert text.startswith("Return the") and len(text) > len("Return the")
    assert text == sample_from_run(run, "Return the", max_new_tokens=20, seed=1)


def test_the_loss_curve_is_drawn_into_the_run_and_an_artifact(tokens_root, prefect_harness):
    from prefect.artifacts import Artifact

    run = Path(tokens_root.version_url("runs", "r1")) if "r1" in tokens_root.versions("runs") else None
    if run is None:
        from flows.pretrain import pretrain

        run = Path(pretrain(version="r1", data_root=tokens_root.url, preset="tiny", train=TRAIN))
    svg = (run / "loss_curve.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 3  # train, validation, unigram baseline
    artifact = Artifact.get("runs-r1-loss-curve")
    assert artifact is not None and "data:image/svg+xml;base64," in artifact.data


def test_a_killed_pretrain_flow_resumes_to_the_losses_of_an_uninterrupted_run(tokens_root, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    # Flat keys, as a user types them: the CLI routes the TrainConfig fields to ``train``.
    params = {"preset": "tiny", **TRAIN, "max_steps": 60, "checkpoint_every": 10, "eval_every": 30}
    env = os.environ | {"GPTFORGE_DATA": tokens_root.url, "PREFECT_API_URL": PREFECT_API_URL.value()}

    def argv(run: str) -> list[str]:
        # Every run in its own process, as deployed: same thread settings, so float sums add up the same way.
        return [sys.executable, "-m", "flows.app.cli", "run", "pretrain", f"-pversion={json.dumps(run)}"] + [
            f"-p{k}={json.dumps(v)}" for k, v in params.items()]

    whole = subprocess.run(argv("whole"), env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    proc = subprocess.Popen(argv("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    work = Path(tokens_root.url) / "runs" / ".killed.partial"
    deadline = time.monotonic() + 120
    while not list(work.glob("out/checkpoints/step_000020.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (Path(tokens_root.url) / "runs" / "killed").exists(), "the kill came too late to test resuming"

    resumed = subprocess.run(argv("killed"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    losses = [(m["step"], m["loss"]) for m in _metrics(Path(tokens_root.version_url("runs", "killed")))]
    assert [step for step, _ in losses] == list(range(1, 61)), "every step once: no gap, no duplicate"
    assert losses == [(m["step"], m["loss"]) for m in _metrics(Path(tokens_root.version_url("runs", "whole")))]
    assert not work.exists()


def test_torchrun_with_two_cpu_processes_from_the_flow(tokens_root, prefect_harness):
    from flows.pretrain import pretrain

    run = Path(pretrain(version="ddp", data_root=tokens_root.url, nproc_per_node=2, preset="tiny",
                        train={**TRAIN, "batch_size": 4, "device": "cpu"}))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"]["processes"] == 2 and manifest["counts"]["step"] == 40
    assert manifest["counts"]["val_loss"] < manifest["counts"]["unigram_entropy"]
    assert (run / "launch.json").is_file() and (run / "torchrun.log").is_file()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_init_from_continues_pretraining_from_a_published_run(tokens_root, prefect_harness):
    from flows.pretrain import pretrain

    if "r1" not in tokens_root.versions("runs"):
        pretrain(version="r1", data_root=tokens_root.url, preset="tiny", train=TRAIN)
    short = {**TRAIN, "max_steps": 5, "warmup_steps": 1, "eval_every": 5, "checkpoint_every": 5}
    run = Path(pretrain(version="more", init_from_run="r1", data_root=tokens_root.url, preset="tiny", train=short))
    manifest = json.loads((run / "manifest.json").read_text())
    assert [u["version"] for u in manifest["upstream"]] == ["k1", "r1"]
    first_loss = _metrics(run)[0]["loss"]
    assert first_loss < _metrics(Path(tokens_root.version_url("runs", "r1")))[0]["loss"] - 0.5


class Killed(Exception):
    pass


def test_a_pretrain_killed_after_its_last_checkpoint_finishes_on_rerun(tokens_root, prefect_harness, monkeypatch):
    from flows.pretrain import pretrain

    def killed(*args, **kwargs):
        raise Killed

    # The state of a kill between the final checkpoint and its metrics line: training is over, nothing after it ran.
    monkeypatch.setattr("flows.pretrain.unigram_entropy", killed)
    with pytest.raises(Killed):
        pretrain(version="last", data_root=tokens_root.url, preset="tiny", train=TRAIN)
    monkeypatch.undo()
    out = Path(tokens_root.local_path) / "runs" / ".last.partial" / "out"
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text("".join(lines[:-1]))
    final = json.loads(lines[-1])

    run = Path(pretrain(version="last", data_root=tokens_root.url, preset="tiny", train=TRAIN))
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert (counts["step"], counts["loss"], counts["val_loss"]) == (40, final["loss"], final["val_loss"])
    assert [m["step"] for m in _metrics(run)] == list(range(1, 41)) and _metrics(run)[-1] == final


@pytest.mark.parametrize("requested", ["cleanup", None], ids=["named run", "next number"])
def test_a_pretrain_killed_between_publish_and_cleanup_reruns_to_the_published_run(tokens_root, prefect_harness,
                                                                                  monkeypatch, requested):
    from flows.pretrain import pretrain

    # a plan of its own: "next number" resumes only its own
    params = {"preset": "tiny", "train": {**TRAIN, "seed": 7 if requested else 8}}
    original = DataRoot.publish

    def publish_then_killed(self, *args):
        original(self, *args)
        raise Killed

    monkeypatch.setattr(DataRoot, "publish", publish_then_killed)
    with pytest.raises(Killed):
        pretrain(version=requested, data_root=tokens_root.url, **params)
    monkeypatch.undo()
    name = requested or next(v for v in tokens_root.versions("runs") if v.startswith("v"))
    manifest = (tokens_root.local_path / "runs" / name / "manifest.json").read_bytes()
    assert (tokens_root.local_path / "runs" / f".{name}.partial").is_dir(), "the state of the kill"

    assert pretrain(version=requested, data_root=tokens_root.url, **params) == tokens_root.version_url("runs", name)
    assert (tokens_root.local_path / "runs" / name / "manifest.json").read_bytes() == manifest
    assert tokens_root.versions("runs").count(name) == 1
    assert not list((tokens_root.local_path / "runs").glob(f".{name}.*")), "work folder and lock file removed"
