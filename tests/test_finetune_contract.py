"""data_contracts.finetune's train/test overlap check: which texts count as the same input."""
from __future__ import annotations

import pytest

from data_contracts.finetune import example_key, overlap_text, overlapping_examples, validate_inputs
from gptcore.taskdata import ClassificationExample, EntailmentExample, TaskData
from gptcore.tasks import TaskSpec

SAME = [  # (a, b, what differs): the same input to a reader's eye
    ("ﬁne day", "fine day", "ligature"),
    ("caf\u00e9", "cafe\u0301", "composed vs decomposed accent"),
    ("ＦＵＬＬ ｗｉｄｔｈ", "full width", "full-width forms"),
    ("a\u200bb", "ab", "zero-width space"),
    ("a\u200cb\u200d", "ab", "zero-width non-joiner and joiner"),
    ("wo\u2060rd", "word", "word joiner"),
    ("he\ufe0fart", "heart", "variation selector"),
    ("co\u034fde", "code", "combining grapheme joiner"),
    ("a\u3164b", "ab", "Hangul filler"),
    ("\ufeffstart", "start", "byte-order mark"),
    ("co\u00adoperate", "cooperate", "soft hyphen"),
    ("don\u2019t", "don't", "curly apostrophe"),
    ("don\u00b4t", "don't", "acute accent typed as an apostrophe"),
    ("don`t", "don't", "grave accent typed as an apostrophe"),
    ("\u201cquoted\u201d", '"quoted"', "curly double quotes"),
    ("\u00abguillemets\u00bb", '"guillemets"', "guillemets"),
    ("well\u2014known", "well-known", "em dash"),
    ("a \u2013 b", "a - b", "en dash"),
    ("Hello, World!", "hello world", "punctuation"),
    ("STRASSE", "stra\u00dfe", "case folding beyond lower()"),
    ("tab\tand\nnew  line", "tab and new line", "whitespace runs"),
    ("\u00a0no-break\u00a0space", "no-break space", "no-break spaces"),
]
DIFFERENT = [  # (a, b, why): other words, which must not count as a leak
    ("caf\u00e9", "cafe", "an accent is part of the letter"),
    ("r\u00e9sum\u00e9", "resume", "an accent is part of the word"),
    ("don't", "dont", "the apostrophe separates words"),
    ("a b", "ab", "a space separates words"),
    ("1.5", "15", "a decimal point separates digits"),
    ("cat", "cats", "another word"),
    ("the film was good", "the film was not good", "another sentence"),
]


@pytest.mark.parametrize("a, b, variant", SAME, ids=[case[2] for case in SAME])
def test_variants_of_one_text_have_the_same_overlap_key(a, b, variant):
    assert overlap_text(a) == overlap_text(b)
    assert example_key(ClassificationExample(a, "x")) == example_key(ClassificationExample(b, "y"))


@pytest.mark.parametrize("a, b, why", DIFFERENT, ids=[case[2] for case in DIFFERENT])
def test_different_texts_keep_different_overlap_keys(a, b, why):
    assert overlap_text(a) != overlap_text(b)


def test_the_texts_of_a_pair_stay_apart_in_its_key():
    assert example_key(EntailmentExample("a b", "c", "e")) != example_key(EntailmentExample("a", "b c", "e"))


def test_the_input_contract_refuses_a_test_example_that_is_a_train_example_in_disguise():
    spec = TaskSpec("classification", ("neg", "pos"))
    train = TaskData("classification", "train.jsonl", [ClassificationExample("Don't stop \u2014 it's fine", "pos"),
                                                        ClassificationExample("awful", "neg")])
    disguised = ClassificationExample("don\u2019t\u200b stop - it\u2019s \ufb01ne", "pos")
    test = TaskData("classification", "test.jsonl", [disguised, ClassificationExample("lovely", "pos")])
    report = validate_inputs(spec, train, test)
    assert [failure.check for failure in report.failures] == ["train_test_disjoint"]
    assert overlapping_examples(train, test) == [{"text": disguised.text, "label": "pos"}]
