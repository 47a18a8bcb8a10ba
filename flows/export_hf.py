"""export hf: a published run → a folder that `transformers` opens with no code and the Hugging Face Hub takes as is.

    config.json, model.safetensors   GPT2LMHeadModel (pre-LN runs) or OpenAIGPTLMHeadModel (post-LN, GPT-1 runs);
                                     the DoubleHeads model of either for a multiple-choice fine-tuned run
    generation_config.json           bos / eos / pad = the end-of-text id
    tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                     the run's tokenizer as a PreTrainedTokenizerFast: <|endoftext|> as bos / eos /
                                     unk, model_max_length = the context; a fine-tuned run's three task tokens added
    task_head.safetensors            fine-tuned classification, entailment or similarity heads, which no
                                     `transformers` class computes (the model card says how to apply it)
    README.md                        the model card: Hub metadata, lineage with checksums, training configuration,
                                     evaluation results, intended use and limits

Everything is read through the data root's verified readers: the run folder against its manifest, the tokens'
index.json and the tokenizer against theirs, evaluation results against their eval version's.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from tokenizers import Tokenizer

from flows.evaluate import read_results
from flows.lineage import tokenizer_of_run, tokens_of_run, upstream_of
from flows.store import MANIFEST, DataRoot, StoreError
from gptcore.checkpoint import CHECKPOINT_FILES, checkpoint_in, load_model
from gptcore.encoding import EOT_TOKEN, TOKENIZER_FILE
from gptcore.finetune import TASK_FILE, load_task_run
from gptcore.hf import save_hf_generation_config, save_hf_model, save_hf_tokenizer, save_task_head
from gptcore.model import GPT
from gptcore.tasks import TaskModel

# How the exported tokenizer spells the start / delimiter / extract rows a fine-tuned run appends (in that order).
TASK_TOKENS = ("<|start|>", "<|delimiter|>", "<|extract|>")
TASK_HEAD_FILE = "task_head.safetensors"
CARD_FILE = "README.md"
HF_ARCHITECTURES = {"pre": "gpt2", "post": "openai-gpt"}
HF_CLASS_PREFIX = {"gpt2": "GPT2", "openai-gpt": "OpenAIGPT"}
# Task result fields that count examples rather than measure the model
COUNT_FIELDS = ("n", "examples")
# model-index task types (the Hub's task ids) for our evaluation task types
HUB_TASK_TYPES = {"multiple_choice": "multiple-choice", "lambada": "text-generation",
                  "completion": "text-generation", "finetuned": "text-classification"}


class ExportError(StoreError):
    """A folder that cannot be exported: not a published run, or an output folder already in use."""


def export_hf(run_folder: str | Path, out: str | Path, license: str = "other") -> Path:
    """Export the published run in `run_folder` (``<data root>/runs/<run>``) to the Hugging Face folder `out`.

    `out` must not exist yet (or be empty); it is written under a temporary name and renamed when complete.
    `license` is the Hub license id of the weights, which depends on the training data (default "other").
    """
    root, run = _locate_run(Path(run_folder))
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder: choose a new output folder")
    folder = root.local_version("runs", run, checked_on_read=(CHECKPOINT_FILES,))  # checkpoints checked on load
    manifest = root.verified_manifest("runs", run)
    tokens = tokens_of_run(root, run)
    eot_id = int(json.loads(root.read_verified("tokens", tokens, "index.json"))["eot_id"])
    tokenizer_version = tokenizer_of_run(root, run)
    tokenizer = Tokenizer.from_str(root.read_verified("tokenizer", tokenizer_version, TOKENIZER_FILE).decode("utf-8"))
    if tokenizer.token_to_id(EOT_TOKEN) != eot_id:
        raise ExportError(f"tokenizer {tokenizer_version!r} gives {EOT_TOKEN!r} the id "
                          f"{tokenizer.token_to_id(EOT_TOKEN)} but tokens {tokens!r} separate documents with "
                          f"{eot_id}: the lineage is inconsistent")
    checkpoint = checkpoint_in(folder, manifest["counts"]["checkpoint"], named_by=f"the manifest of run {run!r}")
    # A fine-tuned run's checkpoint is its manifest's (the latest); its model is the GPT inside the task model.
    task_model = load_task_run(folder)[0] if (folder / TASK_FILE).is_file() else None
    model = task_model.gpt if task_model is not None else load_model(checkpoint)
    lineage = _lineage(root, run, tokens, tokenizer_version, checkpoint, folder)
    evaluations = _evaluations(root, run, manifest["counts"]["checkpoint"])
    card = model_card(out.name, model, task_model, manifest, lineage, evaluations, license)

    work = out.with_name(f".{out.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    try:
        choice_head = task_model.head if task_model is not None and task_model.spec.task == "multiple_choice" else None
        save_hf_model(model, work, eos_token_id=eot_id, choice_head=choice_head,
                      choice_dropout=task_model.clf_dropout.p if task_model is not None else 0.1)
        if task_model is not None and choice_head is None:
            save_task_head(task_model.head, work / TASK_HEAD_FILE, _head_metadata(task_model))
        save_hf_generation_config(work, eot_id)
        save_hf_tokenizer(tokenizer, work, model_max_length=model.config.block_size,
                          added_special_tokens=TASK_TOKENS if task_model is not None else ())
        (work / CARD_FILE).write_text(card)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _locate_run(path: Path) -> tuple[DataRoot, str]:
    """The data root and run id of a run folder; a clear error for anything else."""
    folder = path.resolve()
    if not folder.is_dir():
        raise ExportError(f"run folder {path} does not exist: pass a published run folder such as DATA/runs/v0001")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{path} has no {MANIFEST}: it is not a published version folder; pass a run folder such "
                          "as DATA/runs/v0001 (pretrain or finetune)")
    stage = json.loads(manifest_path.read_text()).get("stage")
    if stage != "runs" or folder.parent.name != "runs":
        raise ExportError(f"{path} is a {stage!r} version, not a run: pass a run folder such as DATA/runs/v0001 "
                          "(pretrain or finetune)")
    return DataRoot.from_env(str(folder.parent.parent)), folder.name


def _head_metadata(task_model: TaskModel) -> dict[str, str]:
    spec = task_model.spec
    return {"task": spec.task, "labels": json.dumps(list(spec.labels)), "regression": json.dumps(spec.regression),
            "start_token": TASK_TOKENS[0], "delimiter_token": TASK_TOKENS[1], "extract_token": TASK_TOKENS[2],
            "start_id": str(task_model.special.start), "delimiter_id": str(task_model.special.delimiter),
            "extract_id": str(task_model.special.extract), "max_len": str(task_model.max_len)}


# -- what the model card reports -----------------------------------------------------------------------------------


def _lineage(root: DataRoot, run: str, tokens: str, tokenizer: str, checkpoint: Path, run_folder: Path) -> list[dict]:
    """Each version the run descends from, newest first, with its manifest checksum (plus the checkpoint)."""
    versions = [("runs", run)]
    pretrained = upstream_of(root, "runs", run, "runs")
    if pretrained is not None:
        versions.append(("runs", pretrained))
    versions += [("tokens", tokens), ("tokenizer", tokenizer)]
    corpus = upstream_of(root, "tokens", tokens, "corpus")
    if corpus is not None:
        versions.append(("corpus", corpus))
    rows = []
    for stage, version in versions:
        manifest = root.verified_manifest(stage, version)
        rows.append({"stage": stage, "version": version, "checksum": manifest["checksum"],
                     "created_at": manifest.get("created_at"), "code_version": manifest.get("code_version")})
    sha256 = (checkpoint.with_name(checkpoint.name + ".sha256")).read_text().split()[0]
    rows.insert(1, {"stage": "checkpoint", "version": checkpoint.relative_to(run_folder).as_posix(), "checksum": sha256,
                    "created_at": None, "code_version": None})
    return rows


def _evaluations(root: DataRoot, run: str, checkpoint: str) -> list[dict]:
    """The results of this run's exported checkpoint in every eval version that evaluated it, oldest first."""
    found = []
    for version in root.versions("eval"):
        upstream = root.verified_manifest("eval", version).get("upstream", [])
        if not any(up.get("stage") == "runs" and up.get("version") == run for up in upstream):
            continue
        results = read_results(root, version)
        for result in results["runs"].values():
            if result["run"] == run and result["checkpoint"] == checkpoint:
                found.append({"eval": version, "result": result, "tasks": results["tasks"]})
    return found


def _model_index(name: str, evaluations: list[dict]) -> list[dict]:
    results = []
    for evaluation in evaluations:
        result = evaluation["result"]  # which eval version measured what: the card's evaluation table
        ppl = result["perplexity"]
        results.append({"task": {"type": "text-generation", "name": "Language modeling"},
                        "dataset": {"type": f"tokens/{result['tokens']}", "name": f"tokens {result['tokens']}",
                                    "split": "validation"},
                        "metrics": [{"type": metric, "value": ppl[metric], "name": f"{metric} (per token)"
                                     if metric in ("perplexity", "loss") else metric}
                                    for metric in ("perplexity", "loss", "bits_per_byte") if metric in ppl]})
        for task_name, task in result["tasks"].items():
            declared = evaluation["tasks"].get(task_name, {})
            metrics = [{"type": metric, "value": value} for metric, value in task["metrics"].items()
                       if metric not in COUNT_FIELDS and _is_number(value)]
            if metrics:
                results.append({"task": {"type": HUB_TASK_TYPES.get(task["type"], "other"), "name": task["type"]},
                                "dataset": {"type": task_name, "name": task_name,
                                            "revision": declared.get("sha256")},
                                "metrics": metrics})
    return [{"name": name, "results": results}] if results else []


def model_card(name: str, model: GPT, task_model: TaskModel | None, manifest: dict, lineage: list[dict],
               evaluations: list[dict], license: str) -> str:
    """The README.md of an export: YAML front matter in the Hub's model card format, then the card's body."""
    config = model.config
    architecture = HF_ARCHITECTURES[config.layer_norm]
    corpus = [row["version"] for row in lineage if row["stage"] == "corpus"]
    metadata = {"license": license, "library_name": "transformers",
                "pipeline_tag": "text-generation" if task_model is None else "text-classification",
                "tags": ["gptforge", architecture, "causal-lm" if task_model is None else "fine-tuned"],
                "datasets": [f"corpus/{version}" for version in corpus],
                "model-index": _model_index(name, evaluations)}
    if not metadata["model-index"]:
        del metadata["model-index"]
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    kind = "GPT-1 layout (post-LN)" if config.layer_norm == "post" else "GPT-2 layout (pre-LN)"
    lines = [f"---\n{front}---", "", f"# {name}", "",
             f"A {model.num_parameters():,}-parameter {kind} decoder trained with gptforge: {config.n_layer} layers, "
             f"{config.n_head} heads, {config.n_embd} dimensions, a {config.block_size}-token context and a "
             f"{config.vocab_size:,}-token vocabulary. `transformers` opens it as "
             f"`{_class_name(architecture, task_model)}`.", "",
             "## How to use", "", _usage(architecture, task_model), "",
             "## Lineage", "",
             "Every version below is immutable and identified by the checksum of its manifest's outputs (the "
             "checkpoint by its sha256).", "", "| stage | version | checksum | created | code |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['version']} | `{r['checksum']}` | {r['created_at'] or ''} | "
              f"{r['code_version'] or ''} |" for r in lineage]
    parameters = manifest["parameters"]
    if task_model is None:
        training = {key: parameters[key] for key in ("tokens", "preset", "model", "train")}
    else:  # the task files by checksum: their paths name the machine they were read on
        training = {**{key: parameters[key] for key in ("pretrained", "spec", "finetune")},
                    "train_file_sha256": parameters["train"]["sha256"],
                    "test_file_sha256": parameters["test"]["sha256"]}
    lines += ["", "## Training configuration", "", "```json", json.dumps(training, indent=2), "```", "",
              "Outcome (from the run's manifest):", "", "```json", json.dumps(manifest["counts"], indent=2), "```",
              "", "## Evaluation", ""]
    lines += _evaluation_lines(evaluations)
    lines += ["", "## Intended use and limits", "",
              "A research artifact: a small model trained to reproduce the GPT-1 / GPT-2 recipe end to end, for "
              "studying the pipeline, the data and the training dynamics. It is not instruction-tuned, not "
              "aligned, and not evaluated for safety, bias or factual accuracy; it reproduces the style and the "
              "biases of its training corpus (listed in the lineage above) and should not be used for decisions "
              "about people or as a source of facts.",
              "",
              f"The context is {config.block_size} tokens; longer inputs must be cut. The tokenizer encodes a "
              f"literal `{EOT_TOKEN}` in text as the end-of-text token (gptcore encodes it as ordinary text). "
              "Perplexities are per token of this tokenizer, so they compare only between models that share it."]
    return "\n".join(lines) + "\n"


def _class_name(architecture: str, task_model: TaskModel | None) -> str:
    prefix = HF_CLASS_PREFIX[architecture]
    if task_model is not None and task_model.spec.task == "multiple_choice":
        return f"{prefix}DoubleHeadsModel"
    return f"{prefix}LMHeadModel"


def _usage(architecture: str, task_model: TaskModel | None) -> str:
    if task_model is None:
        return ("```python\nfrom transformers import pipeline\n\n"
                "generate = pipeline(\"text-generation\", model=FOLDER)\n"
                "print(generate(\"The history of\", max_new_tokens=20, do_sample=False)"
                "[0][\"generated_text\"])\n```\n\n"
                f"Training documents start after `{EOT_TOKEN}`; a prompt that starts with it reads like one.")
    start, delimiter, extract = TASK_TOKENS
    spec = task_model.spec
    texts = {"classification": f'[f"{start}{{text}}{extract}"]',
             "entailment": f'[f"{start}{{premise}}{delimiter}{{hypothesis}}{extract}"]',
             "similarity": f'[f"{start}{{a}}{delimiter}{{b}}{extract}", f"{start}{{b}}{delimiter}{{a}}{extract}"]',
             "multiple_choice": f'[f"{start}{{context}}{delimiter}{{choice}}{extract}" for choice in choices]',
             }[spec.task]
    intro = (f"Fine-tuned for **{spec.task}** (GPT-1 section 3.3): the input sequences are `{texts}`, each at most "
             f"{task_model.max_len} tokens (cut the text, or the first text of a pair, from its start); the tokenizer "
             "turns the task tokens into their ids.\n\n")
    if spec.task == "multiple_choice":
        model_class = f"{HF_CLASS_PREFIX[architecture]}DoubleHeadsModel"
        return intro + (
            "The choice head is the model's `multiple_choice_head`; the highest of `mc_logits` is the answer.\n\n"
            f"```python\nimport torch\nfrom transformers import AutoTokenizer, {model_class}\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained(FOLDER)\nmodel = {model_class}.from_pretrained(FOLDER).eval()\n"
            f"ids = [tokenizer(text)[\"input_ids\"] for text in {texts}]\nlength = max(map(len, ids))\n"
            "input_ids = torch.tensor([[row + [0] * (length - len(row)) for row in ids]])  # (1, choices, T)\n"
            "mc_token_ids = torch.tensor([[len(row) - 1 for row in ids]])  # where each extract token is\n"
            "answer = int(model(input_ids, mc_token_ids=mc_token_ids).mc_logits.argmax(-1))\n```")
    combine = "hidden.sum(0)  # both orderings, summed" if spec.task == "similarity" else "hidden[0]"
    output = ("score = float(h @ head[\"weight\"][0] + head[\"bias\"][0])" if spec.regression
              else f"label = {list(spec.labels)}[int((head[\"weight\"] @ h + head[\"bias\"]).argmax())]")
    return intro + (
        f"No `transformers` class computes this head (GPT-1's head is a Linear with a bias; the sequence "
        f"classification classes have none), so it is `{TASK_HEAD_FILE}` (`weight`, `bias`), applied to the last "
        "layer's hidden state at the extract token:\n\n"
        "```python\nimport torch\nfrom safetensors.torch import load_file\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "tokenizer = AutoTokenizer.from_pretrained(FOLDER)\n"
        "model = AutoModelForCausalLM.from_pretrained(FOLDER).eval()\n"
        f"head = load_file(f\"{{FOLDER}}/{TASK_HEAD_FILE}\")\n"
        f"with torch.no_grad():\n    hidden = torch.stack([model(**tokenizer(text, return_tensors=\"pt\"), "
        f"output_hidden_states=True).hidden_states[-1][0, -1] for text in {texts}])\n"
        f"h = {combine}\n{output}\n```")


def _evaluation_lines(evaluations: list[dict]) -> list[str]:
    if not evaluations:
        return ["This checkpoint has not been evaluated yet (no eval version names the run)."]
    lines = ["| eval | task | metric | value |", "|---|---|---|---|"]
    for evaluation in evaluations:
        result = evaluation["result"]
        for metric, value in result["perplexity"].items():
            lines.append(f"| {evaluation['eval']} | validation split of tokens {result['tokens']} | {metric} | "
                         f"{_number(value)} |")
        for task_name, task in result["tasks"].items():
            lines += [f"| {evaluation['eval']} | {task_name} | {metric} | {_number(value)} |"
                      for metric, value in task["metrics"].items()]
    return lines


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

