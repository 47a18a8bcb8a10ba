"""Zero-shot scoring: multiple choice (raw and length-normalised), LAMBADA-style last word, prompted completion, with
lm-evaluation-harness's metric definitions where it has the metric.

The models here are transparent stand-ins with the GPT interface over a character vocabulary, so every expected
number can be worked out by hand: a unigram model (the same next-character distribution everywhere) and a bigram
model (the most likely next character is a table lookup).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gptcore.generate import generate
from gptcore.model import GPT, GPTConfig, config_from_preset
from gptcore.zeroshot import (CompletionConfig, TaskDataError, evaluate_completion, evaluate_last_word,
                              evaluate_multiple_choice, rouge_l_f1, rouge_n_f1, score_continuations, scored_texts,
                              split_last_word)

VOCAB = 128  # ASCII; id 0 is end-of-text


class CharEncoder:
    eot_id = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


class TableLM(nn.Module):
    """Next-character logits from the previous character only: ``table[prev]`` (V,)."""

    def __init__(self, table: torch.Tensor, block_size: int = 64) -> None:
        super().__init__()
        self.table = table
        self.config = GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=1, n_head=1, n_embd=8)

    def forward(self, idx: torch.Tensor, targets=None, kv_cache=None):
        if kv_cache is not None:  # nothing to cache: only the last character matters
            kv_cache.length += idx.size(1)
        return self.table[idx], None  # (B, T, V)

    @classmethod
    def unigram(cls, probabilities: dict[str, float]) -> "TableLM":
        rest = (1 - sum(probabilities.values())) / (VOCAB - len(probabilities))
        p = torch.full((VOCAB,), rest)
        for char, prob in probabilities.items():
            p[ord(char)] = prob
        return cls(p.log().expand(VOCAB, VOCAB).clone())

    @classmethod
    def bigram(cls, most_likely_next: dict[str, str]) -> "TableLM":
        table = torch.zeros(VOCAB, VOCAB)
        for prev, nxt in most_likely_next.items():
            table[ord(prev), ord(nxt)] = 5.0
        return cls(table)


def test_a_continuation_is_scored_by_the_summed_log_probability_of_its_tokens():
    torch.manual_seed(0)
    model = GPT(config_from_preset("tiny", vocab_size=VOCAB)).eval()
    [score] = score_continuations(model, [([0, 5, 6], [7, 8])])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([[0, 5, 6, 7]]))[0], dim=-1)[0]
    assert score.tokens == 2
    assert score.logprob == pytest.approx(float(logprobs[2, 7] + logprobs[3, 8]), rel=1e-5)


def test_batched_scores_equal_one_at_a_time_and_long_contexts_keep_their_end():
    torch.manual_seed(0)
    model = GPT(config_from_preset("tiny", vocab_size=VOCAB)).eval()
    pairs = [([0, *range(1, 100)], [3, 4]), ([0, 9], [1]), ([0], [5, 6, 7])]  # the first exceeds block_size 64
    together = score_continuations(model, pairs, batch_size=3)
    alone = [score_continuations(model, [pair])[0] for pair in pairs]
    cut = score_continuations(model, [([*range(100 - 63, 100)], [3, 4])])[0]  # what the window keeps
    assert [s.logprob for s in together] == pytest.approx([s.logprob for s in alone], rel=1e-5)
    assert together[0].logprob == pytest.approx(cut.logprob, rel=1e-5)


def test_length_normalisation_picks_the_likely_long_answer_that_the_raw_sum_rejects():
    # Each character has the same probability whatever precedes it. " z": ln 0.3 + ln 0.001 = -8.1 in total,
    # -4.05 per token, -8.1 per character of "z"; " " + 12 "a": ln 0.3 + 12 ln 0.5 = -9.5 in total, -0.73 per token,
    # -0.79 per character.
    model = TableLM.unigram({"a": 0.5, " ": 0.3, "z": 0.001})
    examples = [{"context": "Pick one.", "choices": ["z", "a" * 12], "label": 1}]
    metrics = evaluate_multiple_choice(model, CharEncoder(), examples)
    assert metrics == {"examples": 1, "acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0, "acc_per_token": 1.0,
                       "chance": 0.5}


def test_acc_norm_divides_by_the_characters_of_the_choice_without_the_delimiter():
    # lm-evaluation-harness's acc_norm: ln P(" " + choice) / len(choice). " z": (-4 - 0.5) / 1 = -4.5 loses to
    # " aaaa": (-4 - 4 * 2.5) / 4 = -3.5. Counting the delimiter too would pick " z" (-2.25 against -2.8), and so does
    # the per-token score, which counts the delimiter's token.
    model = TableLM.unigram({" ": math.exp(-4), "z": math.exp(-0.5), "a": math.exp(-2.5)})
    metrics = evaluate_multiple_choice(model, CharEncoder(), [{"context": "Pick.", "choices": ["z", "aaaa"],
                                                               "label": 1}])
    assert (metrics["acc"], metrics["acc_norm"], metrics["acc_bytes"], metrics["acc_per_token"]) == (0, 1, 1, 0)


def test_whitespace_ending_a_context_is_scored_as_the_start_of_the_answer():
    assert scored_texts("Question: why? ", " Because") == ("Question: why?", "  Because")
    assert scored_texts("a\n", "b") == ("a", "\nb") and scored_texts("a", " b") == ("a", " b")
    model = TableLM.unigram({" ": 0.25, "x": 0.25})
    # "some words  xx": the target is "  xx" (both spaces), four tokens of probability 1/4 each
    metrics = evaluate_last_word(model, CharEncoder(), [{"text": "some words  xx"}])
    assert metrics["perplexity"] == pytest.approx(4.0 ** 4, rel=1e-5)


def test_multiple_choice_records_without_a_valid_label_are_refused_by_position():
    model = TableLM.unigram({})
    with pytest.raises(TaskDataError, match="#1: 'label' must be the index"):
        evaluate_multiple_choice(model, CharEncoder(), [{"context": "a", "choices": ["b", "c"], "label": 0},
                                                        {"context": "a", "choices": ["b", "c"], "label": 2}])


def test_the_last_word_counts_as_right_only_when_greedy_decoding_produces_it():
    model = TableLM.bigram({"e": " ", " ": "c", "c": "a", "a": "t", "t": "."})
    examples = [{"text": "I see the cat"}, {"text": "I see the car"}, {"text": "I see the cattle"}]
    metrics = evaluate_last_word(model, CharEncoder(), examples)
    assert metrics["examples"] == 3 and metrics["acc"] == pytest.approx(1 / 3)
    # The same verdicts as actually decoding greedily for as many tokens as the word has:
    encoder = CharEncoder()
    for ex, right in zip(examples, (True, False, False)):
        context, word = split_last_word(ex["text"])
        ids = torch.tensor([[0, *encoder.encode(context)]])
        out = generate(model, ids, len(word), temperature=0)
        assert (encoder.decode(out[0, ids.size(1):].tolist()) == word) is right


def test_the_last_word_perplexity_is_per_word_and_the_token_perplexity_per_token():
    model = TableLM.unigram({" ": 0.25, "x": 0.25})
    metrics = evaluate_last_word(model, CharEncoder(), [{"text": "some words xx"}, {"text": "more words x"}])
    # targets " xx" and " x": 5 tokens of probability 1/4 over 2 words (lm-evaluation-harness's perplexity)
    assert metrics["perplexity"] == pytest.approx(4.0 ** (5 / 2), rel=1e-5)
    assert metrics["token_perplexity"] == pytest.approx(4.0, rel=1e-5)


def test_a_text_without_context_before_its_last_word_is_refused():
    with pytest.raises(TaskDataError, match="no context"):
        split_last_word("alone")


def test_a_completion_follows_the_prompt_template_and_stops_at_the_stop_text():
    model = TableLM.bigram({":": " ", " ": "c", "c": "a", "a": "t", "t": "\n"})
    examples = [{"text": "A story about a pet", "reference": "The cat."}]
    metrics = evaluate_completion(model, CharEncoder(), examples,
                                  CompletionConfig(prompt="{text}\nTL;DR:", max_new_tokens=10, stop="\n"))
    # completion "cat" vs reference "the cat": precision 1, recall 1/2
    assert metrics == {"examples": 1, "rouge1_f1": pytest.approx(2 / 3), "rougeL_f1": pytest.approx(2 / 3),
                       "mean_words": 1.0}


def test_a_prompt_naming_a_field_the_record_lacks_says_which():
    with pytest.raises(TaskDataError, match="'article'"):
        evaluate_completion(TableLM.unigram({}), CharEncoder(), [{"text": "x", "reference": "y"}],
                            CompletionConfig(prompt="{article}\nTL;DR:", max_new_tokens=2))


def test_rouge_scores_word_overlap_and_longest_common_subsequence():
    candidate, reference = "the cat sat on the mat".split(), "the cat on the mat".split()
    assert rouge_n_f1(candidate, reference, 1) == pytest.approx(10 / 11)  # 5 shared of 6 and of 5
    assert rouge_n_f1(candidate, reference, 2) == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert rouge_l_f1(candidate, reference) == pytest.approx(10 / 11)  # LCS "the cat on the mat"
    assert rouge_l_f1(["b", "a"], ["a", "b"]) == pytest.approx(0.5)  # order matters for L, not for 1
    assert rouge_n_f1(["b", "a"], ["a", "b"]) == 1.0
    assert rouge_l_f1([], reference) == 0.0 and math.isfinite(rouge_n_f1([], reference))
