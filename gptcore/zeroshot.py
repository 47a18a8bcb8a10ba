"""GPT-2-style zero-shot evaluation of a language model: no fine-tuning, only the likelihoods and samples it gives.

Three task types, each taking the generic task records (one dict per example):

- **multiple choice** ``{"context", "choices", "label"}``: each answer (``delimiter + choice``) is scored by the summed
  log-likelihood of its tokens after the context. Summed scores favour short answers, so the choice is also made
  after dividing by the choice's length. Metrics, with lm-evaluation-harness's names and definitions where it has
  them: ``acc`` (summed), ``acc_norm`` (per character of the choice), ``acc_bytes`` (per UTF-8 byte of the choice),
  and gptforge's own ``acc_per_token`` (per token of the answer), next to ``chance``.
- **last word** (LAMBADA) ``{"text"}``: the last whitespace-separated word is the target. It counts as right when
  greedy decoding after the rest of the text produces exactly the word's tokens — checked in one forward pass: every
  target token must be the argmax given the tokens before it, which is what greedy decoding would have produced.
  ``acc`` is that fraction; ``perplexity`` is lm-evaluation-harness's, per target word (``exp`` of minus the mean
  summed log-likelihood of a word); ``token_perplexity`` is per target token.
- **completion** ``{"text", "reference", …}``: a prompt template such as ``"{text}\\nTL;DR:"`` (fields of the record
  fill it) is continued greedily or with top-k sampling, and scored against the reference by ROUGE-1 and ROUGE-L F1
  on lowercased alphanumeric words.

Every sequence starts after the end-of-text id, as documents do in the token shards the model was trained on.
Whitespace that ends a context is scored as the start of the continuation (``scored_texts``), as
lm-evaluation-harness does, so the same task run there scores the same tokens.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from gptcore.contamination import normalized_words
from gptcore.encoding import Encoder
from gptcore.generate import generate_text
from gptcore.model import GPT


class TaskDataError(ValueError):
    """Evaluation records that do not have the fields a task type needs."""


@dataclass(frozen=True)
class ContinuationScore:
    """How the model rates a continuation after a context."""

    logprob: float  # summed natural-log probability of the continuation's tokens
    tokens: int
    greedy: bool  # every continuation token is the most likely one given what precedes it


@torch.no_grad()
def score_continuations(model: GPT, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 16,
                        device: torch.device | str = "cpu") -> list[ContinuationScore]:
    """Score (context ids, continuation ids) pairs; contexts longer than the model's window lose their start."""
    block = model.config.block_size
    was_training = model.training
    model.eval()
    scores: list[ContinuationScore] = []
    try:
        for first in range(0, len(pairs), batch_size):
            chunk = pairs[first:first + batch_size]
            sequences = []
            for context, continuation in chunk:
                if not context or not continuation:
                    raise ValueError("a context and a continuation need at least one token each (start the context "
                                     "with the end-of-text id)")
                if len(continuation) > block:
                    raise ValueError(f"a continuation of {len(continuation)} tokens does not fit the model's "
                                     f"block_size {block}: shorten the answers")
                sequences.append((context + continuation)[-(block + 1):])
            width = max(len(s) for s in sequences) - 1
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, seq in enumerate(sequences):  # right-padded: padding comes after every scored position
                x[row, :len(seq) - 1] = torch.tensor(seq[:-1])
            logits, _ = model(x.to(device))  # (B, width, V)
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, (seq, (_, continuation)) in enumerate(zip(sequences, chunk)):
                end = len(seq) - 1
                positions = slice(end - len(continuation), end)
                target = torch.tensor(continuation)
                picked = logprobs[row, positions].gather(-1, target[:, None])[:, 0]
                greedy = bool((logprobs[row, positions].argmax(dim=-1) == target).all())
                scores.append(ContinuationScore(float(picked.sum()), len(continuation), greedy))
    finally:
        model.train(was_training)
    return scores


# -- multiple choice --------------------------------------------------------------------------------------------


def check_multiple_choice(examples: Sequence[dict]) -> None:
    """Raise TaskDataError naming the bad records (first few) and how many there are."""
    bad = []
    for i, ex in enumerate(examples):
        choices, label = ex.get("choices"), ex.get("label")
        if not isinstance(ex.get("context"), str) or not isinstance(choices, list) or len(choices) < 2:
            bad.append(f"#{i}: needs a 'context' string and a 'choices' list of at least 2")
        elif not all(isinstance(c, str) and c for c in choices):
            bad.append(f"#{i}: every choice must be a non-empty string")
        elif not isinstance(label, int) or not 0 <= label < len(choices):
            bad.append(f"#{i}: 'label' must be the index of the right choice (0..{len(choices) - 1}), got {label!r}")
    if not examples:
        bad.append("no records")
    if bad:
        raise TaskDataError(f"{len(bad)} multiple-choice record(s) are invalid: {'; '.join(bad[:3])}")


def scored_texts(context: str, continuation: str) -> tuple[str, str]:
    """(context, continuation) as they are scored: whitespace ending the context moves to the continuation, the rule
    of lm-evaluation-harness (``_encode_pair``), so that a word keeps its leading space in one token."""
    kept = context.rstrip()
    return kept, context[len(kept):] + continuation


MULTIPLE_CHOICE_METRICS = ("acc", "acc_norm", "acc_bytes", "acc_per_token")


def evaluate_multiple_choice(model: GPT, encoder: Encoder, examples: Sequence[dict], delimiter: str = " ",
                             batch_size: int = 16, device: torch.device | str = "cpu") -> dict:
    """Accuracy choosing by summed log-likelihood and by it per character, byte and token; ``delimiter`` joins
    context and answer (lm-evaluation-harness's ``target_delimiter``) and is not counted in a choice's length."""
    check_multiple_choice(examples)
    pairs = []
    for ex in examples:
        for choice in ex["choices"]:
            context, answer = scored_texts(ex["context"], delimiter + choice)
            pairs.append(([encoder.eot_id] + encoder.encode(context), encoder.encode(answer)))
    scores = iter(score_continuations(model, pairs, batch_size, device))
    right = Counter()
    for ex in examples:
        rated = [(next(scores), choice) for choice in ex["choices"]]
        by = {"acc": [s.logprob for s, _ in rated],
              "acc_norm": [s.logprob / len(c) for s, c in rated],
              "acc_bytes": [s.logprob / len(c.encode("utf-8")) for s, c in rated],
              "acc_per_token": [s.logprob / s.tokens for s, _ in rated]}
        for metric, values in by.items():  # the first of equal scores, as numpy's argmax picks
            right[metric] += int(max(range(len(values)), key=values.__getitem__) == ex["label"])
    n = len(examples)
    return {"examples": n, **{metric: right[metric] / n for metric in MULTIPLE_CHOICE_METRICS},
            "chance": sum(1 / len(ex["choices"]) for ex in examples) / n}


# -- last word (LAMBADA) ----------------------------------------------------------------------------------------


def split_last_word(text: str) -> tuple[str, str]:
    """``("the context", " word")``: the target keeps its leading space, as the model sees it after the context."""
    stripped = text.rstrip()
    cut = max(stripped.rfind(" "), stripped.rfind("\n"), stripped.rfind("\t"))
    if cut <= 0:
        raise TaskDataError(f"last-word record {text[:60]!r} has no context before its last word")
    return stripped[:cut], stripped[cut:]


def evaluate_last_word(model: GPT, encoder: Encoder, examples: Sequence[dict], batch_size: int = 16,
                       device: torch.device | str = "cpu") -> dict:
    """LAMBADA-style accuracy (greedy decoding gives the last word) and the last words' perplexity, per word
    (lm-evaluation-harness's ``perplexity``) and per token (``token_perplexity``)."""
    if not examples:
        raise TaskDataError("no last-word records")
    pairs = []
    for i, ex in enumerate(examples):
        if not isinstance(ex.get("text"), str):
            raise TaskDataError(f"last-word record #{i} needs a 'text' string, got fields {sorted(ex)}")
        context, word = scored_texts(*split_last_word(ex["text"]))
        pairs.append(([encoder.eot_id] + encoder.encode(context), encoder.encode(word)))
    scores = score_continuations(model, pairs, batch_size, device)
    logprob, tokens = sum(s.logprob for s in scores), sum(s.tokens for s in scores)
    return {"examples": len(scores), "acc": sum(s.greedy for s in scores) / len(scores),
            "perplexity": math.exp(-logprob / len(scores)), "token_perplexity": math.exp(-logprob / tokens)}


# -- prompted completion ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionConfig:
    """How completions are generated. GPT-2's TL;DR: prompt ``"{text}\\nTL;DR:"``, top-k 2, 100 tokens."""

    prompt: str = "{text}\nTL;DR:"
    max_new_tokens: int = 100
    top_k: int | None = None  # None: greedy decoding; else sample from the k most likely tokens
    stop: str | None = "\n"  # the completion ends before this text (None: only end-of-text and the token limit)
    seed: int = 0


def complete(model: GPT, encoder: Encoder, prompt: str, config: CompletionConfig,
             device: torch.device | str = "cpu") -> str:
    """The model's continuation of ``prompt`` (without the prompt), cut at ``config.stop``."""
    room = model.config.block_size - config.max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens={config.max_new_tokens} leaves no room for a prompt in block_size "
                         f"{model.config.block_size}")
    temperature = 0.0 if config.top_k is None else 1.0
    text = generate_text(model, encoder, prompt, config.max_new_tokens, temperature=temperature, top_k=config.top_k,
                         seed=config.seed, max_prompt_tokens=room,  # a long text loses its start, never the instruction
                         device=device)
    text = text.lstrip()  # the answer may start on the line after the instruction
    return text.split(config.stop, 1)[0] if config.stop else text


def rouge_n_f1(candidate: Sequence[str], reference: Sequence[str], n: int = 1) -> float:
    """ROUGE-N F1: clipped n-gram overlap between two word sequences."""
    cand = Counter(tuple(candidate[i:i + n]) for i in range(len(candidate) - n + 1))
    ref = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    overlap = sum((cand & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(cand.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def rouge_l_f1(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1: based on the longest common subsequence of the two word sequences."""
    if not candidate or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for word in candidate:
        current = [0]
        for j, ref_word in enumerate(reference):
            current.append(previous[j] + 1 if word == ref_word else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def evaluate_completion(model: GPT, encoder: Encoder, examples: Sequence[dict], config: CompletionConfig,
                        device: torch.device | str = "cpu") -> dict:
    """Mean ROUGE-1 / ROUGE-L F1 of the completions against each record's ``reference``."""
    if not examples:
        raise TaskDataError("no completion records")
    rouge1, rougel, lengths = [], [], []
    for i, ex in enumerate(examples):
        if not isinstance(ex.get("reference"), str):
            raise TaskDataError(f"completion record #{i} needs a 'reference' string, got fields {sorted(ex)}")
        try:
            prompt = config.prompt.format(**ex)
        except KeyError as missing:
            raise TaskDataError(f"the prompt {config.prompt!r} uses field {missing} that completion record #{i} "
                                f"lacks (fields: {sorted(ex)})") from None
        words = normalized_words(complete(model, encoder, prompt, config, device))
        reference = normalized_words(ex["reference"])
        rouge1.append(rouge_n_f1(words, reference, 1))
        rougel.append(rouge_l_f1(words, reference))
        lengths.append(len(words))
    n = len(examples)
    return {"examples": n, "rouge1_f1": sum(rouge1) / n, "rougeL_f1": sum(rougel) / n,
            "mean_words": sum(lengths) / n}
