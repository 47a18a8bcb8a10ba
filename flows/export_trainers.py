"""A run for llm.c: its latest checkpoint as llm.c model files, its tokenizer (found through the run's lineage) as
llm.c's tokenizer file and, on request, the tokens it was trained on as llm.c data shards, in one folder."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from flows.lineage import tokens_of_run
from flows.run_checkpoint import latest_run_checkpoint
from gptcore.checkpoint import load_model
from gptcore.export import export_llmc, export_llmc_model
from gptcore.llmc import Dtype
from gptcore.shards import SHARD_FILES


def export_run_for_llmc(run: str | Path, out_dir: str | Path, dtypes: Sequence[Dtype] = ("float32", "bfloat16"),
                        with_data: bool = False) -> dict[str, Path]:
    """Write ``gpt2_<run>.bin`` / ``gpt2_<run>_bf16.bin``, ``gpt2_tokenizer.bin`` and, with ``with_data``,
    ``<run>_{train,val}_NNNNNN.bin`` into ``out_dir`` (every input verified against its manifest first).
    Returns dtype / ``"tokenizer"`` / data file name → path.

    train_gpt2.cu then continues the run with ``-e gpt2_<run>_bf16.bin -i '<run>_train_*.bin' -j '<run>_val_*.bin'``
    run in ``out_dir`` (its tokenizer path is fixed); its sequence length ``-t`` must not exceed the run's context.
    """
    found = latest_run_checkpoint(run)
    written = export_llmc_model(load_model(found.checkpoint), Tokenizer.from_file(str(found.tokenizer)), out_dir,
                                name=found.run, dtypes=dtypes)
    if with_data:
        root = found.root
        tokens = root.local_version("tokens", tokens_of_run(root, found.run), checked_on_read=(SHARD_FILES,))
        written |= {path.name: path for path in export_llmc(tokens, out_dir, prefix=found.run)}
    return written
