"""The same entry point under torchrun: 2 CPU processes (gloo) train in step and end with identical weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch.distributed as dist

from gptcore.checkpoint import load_checkpoint
from gptcore.metrics_log import read_metrics_log
from tests.builders import train_val_tokens

VOCAB = 32
SEQ = 16

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no gloo backend for CPU process groups")


def run_torchrun(tokens, out, *extra: str) -> list[dict]:
    """Launch 2 local processes on a free port; return each rank's JSON summary line."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "gptcore.train", "--tokens", str(tokens), "--out", str(out), "--preset", "tiny", "--precision", "fp32",
               "--vocab-size", str(VOCAB), "--seq-len", str(SEQ), "--batch-size", "2", "--grad-accum", "2",
               "--warmup-steps", "1", "--eval-every", "2", "--eval-batches", "3", "--device", "cpu", *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return sorted(summaries, key=lambda s: s["rank"])


def test_two_processes_train_in_step_and_only_rank_0_writes_the_run(tmp_path):
    rng = np.random.default_rng(0)
    tokens = train_val_tokens(tmp_path / "tokens", [rng.integers(1, VOCAB, 3000).tolist()],
                              [rng.integers(1, VOCAB, 400).tolist()], VOCAB)
    out = tmp_path / "run"
    ranks = run_torchrun(tokens, out, "--max-steps", "3", "--dropout", "0.1")

    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["step"] == 3 and r["stopped_by"] == "max_steps" for r in ranks)
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"], "DDP keeps the replicas identical"
    assert ranks[0]["loss"] == ranks[1]["loss"], "the logged loss is the mean over both processes"
    metrics = read_metrics_log(out)
    assert [m["step"] for m in metrics] == [1, 2, 3], "one metrics line per step, from rank 0 only"
    assert metrics[-1]["tokens_seen"] == 3 * 2 * 2 * SEQ * 2  # steps · micro-batches · rows · tokens · processes
    state = load_checkpoint(out / "checkpoints" / "step_000003.pt")
    assert len(state["rng"]) == 2, "every process's RNG state is saved"
    assert not torch_equal(state["rng"][0]["torch"], state["rng"][1]["torch"]), "each process has its own dropout"

    resumed = run_torchrun(tokens, out, "--max-steps", "4", "--dropout", "0.1")
    assert [r["step"] for r in resumed] == [4, 4]
    assert resumed[0]["params_sha256"] == resumed[1]["params_sha256"]


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_fsdp_shards_the_model_and_resumes_from_a_ddp_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    tokens = train_val_tokens(tmp_path / "tokens", [rng.integers(1, VOCAB, 3000).tolist()],
                              [rng.integers(1, VOCAB, 400).tolist()], VOCAB)
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    run_torchrun(tokens, ddp, "--max-steps", "4", "--checkpoint-every", "2")
    run_torchrun(tokens, fsdp, "--max-steps", "2", "--parallel", "fsdp")
    state = load_checkpoint(fsdp / "checkpoints" / "step_000002.pt")
    assert state["model"]["transformer.wte.weight"].shape == (VOCAB, 64), "the checkpoint holds full weights"

    ranks = run_torchrun(tokens, fsdp, "--max-steps", "4", "--parallel", "fsdp")
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    ddp_losses = [m["loss"] for m in read_metrics_log(ddp)]
    fsdp_losses = [m["loss"] for m in read_metrics_log(fsdp)]
    assert fsdp_losses == pytest.approx(ddp_losses, rel=1e-5), "FSDP trains the same model as DDP"

    # A sharded run's checkpoint resumes unsharded, and the reverse: the state layout is the same.
    for newest in ("step_000004.pt", "step_000004.pt.sha256", "latest"):
        (ddp / "checkpoints" / newest).unlink()
    resumed = run_torchrun(tokens, ddp, "--max-steps", "4", "--parallel", "fsdp")
    assert resumed[0]["params_sha256"] == ranks[0]["params_sha256"]
