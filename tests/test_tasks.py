"""gptcore.tasks: GPT-1's input transformations, truncation, the task model with three new tokens, and L3."""
from __future__ import annotations

import pytest
import torch

from gptcore.model import GPT, GPTConfig
from gptcore.taskdata import ClassificationExample, EntailmentExample, MultipleChoiceExample, SimilarityExample
from gptcore.tasks import (N_SPECIAL, SpecialTokens, TaskModel, TaskSpec, collate, encode_example, fit_pair, infer_spec,
                           label_tensor, objective)

VOCAB = 50
SPECIAL = SpecialTokens.after(VOCAB)  # 50, 51, 52
CONFIG = GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


class CharEncoder:
    """One id per lowercase letter (a=1 … z=26), so expected token lists can be written by hand."""

    vocab_size, eot_id, kind, fallback_reason = VOCAB, 0, "test", None

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") + 1 for c in text if c.isalpha()]

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i + ord("a") - 1) for i in ids)


ENC = CharEncoder()
S, D, E = SPECIAL.start, SPECIAL.delimiter, SPECIAL.extract


def test_the_three_new_tokens_follow_the_pretrained_vocabulary():
    assert (S, D, E) == (VOCAB, VOCAB + 1, VOCAB + 2)


def test_classification_is_start_text_extract():
    assert encode_example(ClassificationExample("abc", "x"), ENC, SPECIAL, 16) == [[S, 1, 2, 3, E]]


def test_entailment_is_start_premise_delimiter_hypothesis_extract():
    assert encode_example(EntailmentExample("ab", "cd", "x"), ENC, SPECIAL, 16) == [[S, 1, 2, D, 3, 4, E]]


def test_similarity_gives_both_orderings():
    assert encode_example(SimilarityExample("ab", "c", "x"), ENC, SPECIAL, 16) == [[S, 1, 2, D, 3, E],
                                                                                    [S, 3, D, 1, 2, E]]


def test_multiple_choice_gives_one_sequence_per_choice():
    example = MultipleChoiceExample("ab", ("c", "de"), 1)
    assert encode_example(example, ENC, SPECIAL, 16) == [[S, 1, 2, D, 3, E], [S, 1, 2, D, 4, 5, E]]


def test_truncation_keeps_the_end_of_the_context_and_the_whole_answer():
    (sequence,) = encode_example(EntailmentExample("abcdefgh", "xyz", "l"), ENC, SPECIAL, 9)
    assert sequence == [S, 6, 7, 8, D, 24, 25, 26, E]  # the context's last letters f g h, the whole answer


def test_an_answer_longer_than_the_budget_keeps_its_beginning():
    assert fit_pair([1, 2], [3, 4, 5, 6], budget=3) == ([], [3, 4, 5])
    assert fit_pair([1, 2, 3], [4], budget=3) == ([2, 3], [4])


def test_classification_text_too_long_keeps_its_end():
    (sequence,) = encode_example(ClassificationExample("abcdefgh", "x"), ENC, SPECIAL, 5)
    assert sequence == [S, 6, 7, 8, E]


def test_similarity_truncation_cuts_the_longer_text_so_both_orderings_hold_the_same_tokens():
    first, second = encode_example(SimilarityExample("abcdefg", "xy", "l"), ENC, SPECIAL, 8)
    assert first == [S, 5, 6, 7, D, 24, 25, E] and second == [S, 24, 25, D, 5, 6, 7, E]


def test_spec_takes_declared_labels_or_the_sorted_labels_seen():
    examples = [ClassificationExample("a", "pos"), ClassificationExample("b", "neg")]
    assert infer_spec("classification", examples).labels == ("neg", "pos")
    assert infer_spec("classification", examples, ["pos", "neg"]).labels == ("pos", "neg")
    assert infer_spec("similarity", [SimilarityExample("a", "b", 3.5)]).regression
    assert infer_spec("multiple_choice", []).n_outputs == 1
    with pytest.raises(ValueError, match="at least 2 labels"):
        TaskSpec("classification", ("only",))


def test_labels_outside_the_declared_set_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"\['maybe'\]"):
        label_tensor([ClassificationExample("a", "maybe")], TaskSpec("classification", ("no", "yes")))


def _pretrained() -> GPT:
    torch.manual_seed(1)
    return GPT(CONFIG).eval()


def test_only_three_embedding_rows_and_the_head_are_new_parameters():
    pretrained = _pretrained()
    model = TaskModel(CONFIG, TaskSpec("classification", ("a", "b", "c")))
    model.load_pretrained(pretrained.state_dict())
    new = model.gpt.transformer.wte.weight.shape[0] - pretrained.transformer.wte.weight.shape[0]
    assert new == N_SPECIAL
    head = sum(p.numel() for p in model.head.parameters())
    assert sum(p.numel() for p in model.parameters()) == pretrained.num_parameters() + N_SPECIAL * 16 + head
    assert torch.equal(model.gpt.transformer.wte.weight[:VOCAB], pretrained.transformer.wte.weight)


def test_the_loaded_model_reads_ordinary_text_exactly_like_the_pretrained_one():
    pretrained = _pretrained()
    model = TaskModel(CONFIG, TaskSpec("classification", ("a", "b"))).eval()
    model.load_pretrained(pretrained.state_dict())
    ids = torch.tensor([[3, 1, 4, 1, 5, 9]])
    assert torch.allclose(model.gpt.hidden_states(ids), pretrained.hidden_states(ids))
    logits, _ = pretrained(ids)
    assert torch.allclose(logits, pretrained.lm_head(pretrained.hidden_states(ids)))


def test_similarity_logits_do_not_depend_on_which_text_comes_first():
    model = TaskModel(CONFIG, TaskSpec("similarity")).eval()
    ab = collate([encode_example(SimilarityExample("abc", "de", 1.0), ENC, SPECIAL, 16)])
    ba = collate([encode_example(SimilarityExample("de", "abc", 1.0), ENC, SPECIAL, 16)])
    assert model(ab).logits.shape == (1,)
    assert torch.allclose(model(ab).logits, model(ba).logits, atol=1e-6)


def test_padding_and_batch_neighbours_do_not_change_an_examples_logits():
    model = TaskModel(CONFIG, TaskSpec("multiple_choice")).eval()
    short = encode_example(MultipleChoiceExample("ab", ("c", "d"), 0), ENC, SPECIAL, 32)
    long = encode_example(MultipleChoiceExample("abcdefghij", ("klm", "n", "op"), 2), ENC, SPECIAL, 32)
    alone = model(collate([short])).logits
    batched = model(collate([short, long])).logits
    assert batched.shape == (2, 3)
    assert torch.allclose(alone[0], batched[0, :2], atol=1e-5)
    assert batched[0, 2] == float("-inf")  # the missing third choice can never win


def test_l3_is_the_task_loss_plus_lambda_times_the_lm_loss():
    model = TaskModel(CONFIG, TaskSpec("classification", ("a", "b")))
    batch = collate([encode_example(ClassificationExample("abcd", "a"), ENC, SPECIAL, 16)])
    output = model(batch, with_lm_loss=True)
    task_loss = model.task_loss(output.logits, torch.tensor([0]))
    assert torch.allclose(objective(task_loss, output.lm_loss, 0.5), task_loss + 0.5 * output.lm_loss)
    assert objective(task_loss, output.lm_loss, 0.0) is task_loss


def test_the_lm_loss_predicts_text_only_not_special_tokens_or_padding():
    model = TaskModel(CONFIG, TaskSpec("classification", ("a", "b"))).eval()
    padded = collate([encode_example(ClassificationExample("abcd", "a"), ENC, SPECIAL, 16),
                      encode_example(ClassificationExample("abcdefghij", "a"), ENC, SPECIAL, 16)])
    alone = collate([encode_example(ClassificationExample("abcd", "a"), ENC, SPECIAL, 16)])
    hidden = model.gpt.hidden_states(alone.tokens[:, 0])
    logits = model.gpt.lm_head(hidden)[0, :4]  # positions start, a, b, c predict a, b, c, d
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 3, 4]))
    assert torch.allclose(model(alone, with_lm_loss=True).lm_loss, expected, atol=1e-5)
    assert model(padded, with_lm_loss=True).lm_loss.isfinite()
