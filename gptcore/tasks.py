"""GPT-1 fine-tuning (section 3.2-3.3): input transformations, truncation, the task model and the L3 objective.

Every task becomes one or more token sequences that the pretrained transformer reads unchanged; only three new
embedding rows (start, delimiter, extract) and a linear head are new parameters (figure 1 of the paper)::

    classification   [start] text [extract]                      → head(h_extract)             → class logits
    entailment       [start] premise [delim] hypothesis [extract] → head(h_extract)             → class logits
    similarity       [start] a [delim] b [extract] and
                     [start] b [delim] a [extract]                → head(h_ab + h_ba)           → classes or a score
    multiple choice  [start] context [delim] answer_k [extract]   → head(h_k) for each k        → softmax over k

The objective is L3 = L2 + λ·L1 (section 3.2): L2 the task loss (cross-entropy; squared error for similarity
scores), L1 the language-modelling loss on the same inputs (λ = 0.5 in the paper; 0 switches it off).

Shape legend: B examples, K sequences per example (1, 2, or the number of choices), T tokens, C n_embd.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptcore.encoding import Encoder
from gptcore.model import GPT, GPTConfig
from gptcore.taskdata import (TASK_TYPES, ClassificationExample, EntailmentExample, Example, MultipleChoiceExample,
                              SimilarityExample, TaskType)

N_SPECIAL = 3  # start, delimiter, extract
PAD_ID = 0  # any real id: sequences are right-padded and attention is causal, so padding is never attended to


@dataclass(frozen=True)
class TaskSpec:
    """What the head predicts: the task type, and the class names (none for scores and multiple choice)."""

    task: TaskType
    labels: tuple[str, ...] = ()  # class names in head-output order; empty = regression (similarity only)

    def __post_init__(self) -> None:
        if self.task not in TASK_TYPES:
            raise ValueError(f"unknown task type {self.task!r}; choose one of {TASK_TYPES}")
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.task == "multiple_choice" and self.labels:
            raise ValueError("multiple-choice labels are choice indices: pass no labels for task 'multiple_choice'")
        if self.task in ("classification", "entailment") and len(self.labels) < 2:
            raise ValueError(f"task {self.task!r} needs at least 2 labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {list(self.labels)}")

    @property
    def regression(self) -> bool:
        return self.task == "similarity" and not self.labels

    @property
    def n_outputs(self) -> int:
        """Width of the linear head: one logit per class, or one scalar (a score, or a choice's logit)."""
        return len(self.labels) if self.labels else 1

    def to_dict(self) -> dict:
        return {"task": self.task, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, spec: dict) -> "TaskSpec":
        return cls(task=spec["task"], labels=tuple(spec.get("labels") or ()))


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the three new tokens: the rows appended after the pretrained vocabulary."""

    start: int
    delimiter: int
    extract: int

    @classmethod
    def after(cls, vocab_size: int) -> "SpecialTokens":
        return cls(vocab_size, vocab_size + 1, vocab_size + 2)


def infer_spec(task: TaskType, examples: Sequence[Example], labels: Sequence[str] | None = None) -> TaskSpec:
    """The spec for ``examples``: declared ``labels`` when given, else the sorted labels seen in the examples
    (similarity examples with numeric labels make a regression spec)."""
    if task == "multiple_choice":
        return TaskSpec(task)
    if labels:
        return TaskSpec(task, tuple(labels))
    seen = {example.label for example in examples}
    if task == "similarity" and seen and all(isinstance(label, float) for label in seen):
        return TaskSpec(task)
    return TaskSpec(task, tuple(sorted(str(label) for label in seen)))


# -- input transformations ---------------------------------------------------------------------------------------


def fit_pair(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut two token lists to at most ``budget`` tokens together.

    The second part (hypothesis, answer) is kept whole and the first (context, premise) loses tokens from its
    start, so the end of the context, which leads into the answer, survives. Only a second part longer than the
    whole budget is cut, keeping its beginning.
    """
    second = second[:budget]
    keep = budget - len(second)
    return (first[len(first) - keep:] if keep > 0 else []), second


def _pair(special: SpecialTokens, first: list[int], second: list[int], max_len: int) -> list[int]:
    first, second = fit_pair(first, second, max_len - 3)
    return [special.start, *first, special.delimiter, *second, special.extract]


def encode_example(example: Example, encoder: Encoder, special: SpecialTokens, max_len: int) -> list[list[int]]:
    """The token sequences of one example (K of them, each at most ``max_len`` tokens, extract token last)."""
    if max_len < 4:
        raise ValueError(f"max_len={max_len} leaves no room for text beside the 3 special tokens: use at least 4")
    if isinstance(example, ClassificationExample):
        text = encoder.encode(example.text)
        return [[special.start, *text[max(0, len(text) - (max_len - 2)):], special.extract]]
    if isinstance(example, EntailmentExample):
        return [_pair(special, encoder.encode(example.premise), encoder.encode(example.hypothesis), max_len)]
    if isinstance(example, SimilarityExample):
        a, b = encoder.encode(example.text_a), encoder.encode(example.text_b)
        # Both orderings must see the same tokens: cut the longer text from its start until the pair fits.
        while len(a) + len(b) > max_len - 3:
            if len(a) >= len(b):
                a = a[1:]
            else:
                b = b[1:]
        return [[special.start, *a, special.delimiter, *b, special.extract],
                [special.start, *b, special.delimiter, *a, special.extract]]
    if isinstance(example, MultipleChoiceExample):
        context = encoder.encode(example.context)
        return [_pair(special, context, encoder.encode(choice), max_len) for choice in example.choices]
    raise TypeError(f"not a task example: {type(example).__name__}")


@dataclass
class TaskBatch:
    """Padded sequences of B examples: tokens (B, K, T), lengths (B, K) (0 for a missing choice), mask (B, K)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> "TaskBatch":
        return TaskBatch(self.tokens.to(device), self.lengths.to(device), self.mask.to(device))


def collate(encoded: Sequence[list[list[int]]]) -> TaskBatch:
    """Pad a batch of encoded examples to the longest sequence and the most sequences (choices) per example."""
    B, K = len(encoded), max(len(sequences) for sequences in encoded)
    T = max(len(sequence) for sequences in encoded for sequence in sequences)
    tokens = torch.full((B, K, T), PAD_ID, dtype=torch.long)
    lengths = torch.zeros((B, K), dtype=torch.long)
    for b, sequences in enumerate(encoded):
        for k, sequence in enumerate(sequences):
            tokens[b, k, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            lengths[b, k] = len(sequence)
    return TaskBatch(tokens, lengths, lengths > 0)


def label_tensor(examples: Sequence[Example], spec: TaskSpec) -> torch.Tensor:
    """Targets for the task loss: class indices, choice indices, or float scores."""
    if spec.regression:
        return torch.tensor([float(example.label) for example in examples], dtype=torch.float32)
    if spec.task == "multiple_choice":
        return torch.tensor([example.label for example in examples], dtype=torch.long)
    index = {label: i for i, label in enumerate(spec.labels)}
    missing = sorted({str(e.label) for e in examples} - index.keys())
    if missing:
        raise ValueError(f"labels {missing} are not among the declared labels {list(spec.labels)}: declare them "
                         "or fix the data")
    return torch.tensor([index[str(example.label)] for example in examples], dtype=torch.long)


# -- the model ---------------------------------------------------------------------------------------------------


@dataclass
class TaskOutput:
    logits: torch.Tensor  # (B, n_labels) classes, (B,) scores, or (B, K) choices (missing choices at -inf)
    lm_loss: torch.Tensor | None  # L1 on the inputs, when asked for


class TaskModel(nn.Module):
    """A GPT whose vocabulary has ``N_SPECIAL`` more rows, plus a dropout and a linear head on the extract state."""

    def __init__(self, base_config: GPTConfig, spec: TaskSpec, clf_dropout: float = 0.1,
                 max_len: int | None = None) -> None:
        super().__init__()
        self.base_config = base_config
        self.spec = spec
        # Tokens per sequence, specials included; at most the context the position embeddings cover.
        self.max_len = min(max_len or base_config.block_size, base_config.block_size)
        self.special = SpecialTokens.after(base_config.vocab_size)
        self.gpt = GPT(replace(base_config, vocab_size=base_config.vocab_size + N_SPECIAL))
        self.clf_dropout = nn.Dropout(clf_dropout)  # GPT-1 section 4.1: dropout 0.1 on the classifier
        self.head = nn.Linear(base_config.n_embd, spec.n_outputs)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy a pretrained ``GPT`` state dict in; the vocabulary-sized matrices get the pretrained rows first and
        keep their fresh N(0, 0.02) initialisation in the new rows."""
        own = self.gpt.state_dict()
        if set(own) != set(state_dict):
            raise ValueError(f"the pretrained weights do not match the model: missing {sorted(set(own) - set(state_dict))}"
                             f", unexpected {sorted(set(state_dict) - set(own))}; is it a GPT checkpoint of this config?")
        with torch.no_grad():
            for name, tensor in state_dict.items():
                target = own[name]
                if target.shape == tensor.shape:
                    target.copy_(tensor)
                elif target.shape[1:] == tensor.shape[1:] and target.shape[0] == tensor.shape[0] + N_SPECIAL:
                    target[:tensor.shape[0]].copy_(tensor)
                else:
                    raise ValueError(f"pretrained {name} has shape {tuple(tensor.shape)}, the model expects "
                                     f"{tuple(target.shape)}: the checkpoint belongs to another model config")

    def forward(self, batch: TaskBatch, with_lm_loss: bool = False) -> TaskOutput:
        B, K, T = batch.tokens.shape
        flat = batch.tokens.view(B * K, T)
        hidden = self.gpt.hidden_states(flat)  # (B*K, T, C)
        last = (batch.lengths.view(-1) - 1).clamp(min=0)  # extract position of each sequence
        extract = hidden[torch.arange(B * K, device=flat.device), last].view(B, K, -1)  # (B, K, C)
        features = self.clf_dropout(extract)

        if self.spec.task == "multiple_choice":
            logits = self.head(features).squeeze(-1).masked_fill(~batch.mask, float("-inf"))  # (B, K)
        elif self.spec.task == "similarity":
            logits = self.head(features.sum(dim=1))  # both orderings summed element-wise: (B, n_outputs)
        else:
            logits = self.head(features[:, 0])  # (B, n_labels)
        if self.spec.regression:
            logits = logits.squeeze(-1)  # (B,)

        lm_loss = self._lm_loss(hidden, flat, batch.lengths.view(-1)) if with_lm_loss else None
        return TaskOutput(logits, lm_loss)

    def _lm_loss(self, hidden: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """L1: next-token cross-entropy over the text of every sequence. Targets that are special tokens or
        padding are left out, so the auxiliary objective stays the pretraining one (predict text)."""
        logits = self.gpt.lm_head(hidden[:, :-1])  # (B*K, T-1, V + 3)
        targets = tokens[:, 1:].clone()
        positions = torch.arange(1, tokens.size(1), device=tokens.device)[None, :]
        targets[(positions >= lengths[:, None]) | (targets >= self.base_config.vocab_size)] = -1
        if not (targets >= 0).any():
            return logits.sum() * 0.0  # no text to predict (e.g. one-token texts): contributes nothing
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L2: cross-entropy over classes or choices; squared error for similarity scores."""
        if self.spec.regression:
            return F.mse_loss(logits.float(), targets.float())
        return F.cross_entropy(logits.float(), targets)

    def config_dict(self) -> dict:
        """Everything needed to rebuild this model around a state dict (see ``from_config_dict``)."""
        return {"base_config": asdict(self.base_config), "spec": self.spec.to_dict(),
                "clf_dropout": self.clf_dropout.p, "max_len": self.max_len, "special_tokens": asdict(self.special)}

    @classmethod
    def from_config_dict(cls, config: dict) -> "TaskModel":
        return cls(GPTConfig(**config["base_config"]), TaskSpec.from_dict(config["spec"]),
                   clf_dropout=config["clf_dropout"], max_len=config["max_len"])

    def encode(self, example: Example, encoder: Encoder) -> list[list[int]]:
        """The example's token sequences for this model (its special ids and max_len)."""
        return encode_example(example, encoder, self.special, self.max_len)


def objective(task_loss: torch.Tensor, lm_loss: torch.Tensor | None, aux_lm_weight: float) -> torch.Tensor:
    """L3 = L2 + λ·L1 (GPT-1 equation 5)."""
    if aux_lm_weight == 0 or lm_loss is None:
        return task_loss
    return task_loss + aux_lm_weight * lm_loss
