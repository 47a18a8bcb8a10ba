"""The finetune gates.

Input contract (before any training): both files yielded examples, few of their rows were rejected, every label is
in the declared set (a choice index within the choices; a finite score for regression), every text is non-empty,
and no test example also appears in the training data (a leak would inflate the test metrics).

Output contract (before publishing): every training loss is finite, and every metric the task reports is present
and finite.

Frames hold labels, lengths and flags only, never the texts: GX hashes whole frames.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd
from gptcore.taskdata import Example, MultipleChoiceExample, TaskData, texts_of, to_record
from gptcore.tasks import TaskSpec

MAX_REJECT_FRACTION = 0.1  # more unreadable rows than this means the reader or the column mapping is wrong


class _Folding(dict):
    """str.translate table, filled as characters are met (all of Unicode up front takes seconds): format characters
    (zero-width space/joiners U+200B-U+200D, word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi marks: category
    Cf) and other invisible marks (variation selectors, U+034F, Hangul fillers) vanish; punctuation (P*: curly and straight quotes, dashes, brackets, …) and the accents people type as
    apostrophes become a space, so "don’t" and "don't" meet; anything else stays."""

    def __missing__(self, code: int) -> str | int | None:
        category = unicodedata.category(chr(code))
        invisible = category == "Cf" or code in _INVISIBLE_MARKS
        self[code] = None if invisible else " " if category.startswith("P") else code
        return self[code]


# Invisible but not category Cf: variation selectors, the combining grapheme joiner, Hangul fillers.
_INVISIBLE_MARKS = frozenset([*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), 0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0])


_FOLDING = _Folding({ord(c): " " for c in "`´ʹʻʼˈ′″"})


def overlap_text(text: str) -> str:
    """``text`` as the overlap check compares it: NFKC (ligatures, full-width forms, composed accents), invisible
    characters dropped, punctuation folded to spaces, case-folded, whitespace runs collapsed.

    Accents stay (``café`` ≠ ``cafe``) and so do word boundaries (``dont`` ≠ ``don't``): those are other words.
    """
    # Folded before NFKC too: NFKC turns "´" into a space and a combining accent, which would no longer fold.
    text = unicodedata.normalize("NFKC", text.translate(_FOLDING)).translate(_FOLDING)
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())  # NFKC again: casefold can denormalise


def example_key(example: Example) -> str:
    """What makes two examples the same input: their texts as ``overlap_text`` folds them (not the label)."""
    return "\x1f".join(overlap_text(text) for text in texts_of(example))


def _label_frame(spec: TaskSpec, examples: Sequence[Example]) -> tuple[pd.DataFrame, list]:
    """One row per example: its label (as checked) and its shortest text; plus the label expectations."""
    shortest = [min(len(text.strip()) for text in texts_of(example)) for example in examples]
    if spec.task == "multiple_choice":
        ok = [isinstance(e, MultipleChoiceExample) and 0 <= e.label < len(e.choices) for e in examples]
        frame = pd.DataFrame({"label_in_choices": ok, "shortest_text": shortest})
        return frame, [gxe.ExpectColumnValuesToBeInSet(column="label_in_choices", value_set=[True])]
    if spec.regression:
        finite = [isinstance(e.label, (int, float)) and math.isfinite(e.label) for e in examples]
        frame = pd.DataFrame({"label_is_finite_score": finite, "shortest_text": shortest})
        return frame, [gxe.ExpectColumnValuesToBeInSet(column="label_is_finite_score", value_set=[True])]
    frame = pd.DataFrame({"label": [str(e.label) for e in examples], "shortest_text": shortest})
    return frame, [gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(spec.labels))]


def validate_inputs(spec: TaskSpec, train: TaskData, test: TaskData,
                    max_reject_fraction: float = MAX_REJECT_FRACTION) -> GateReport:
    checks = []
    for name, data in (("train", train), ("test", test)):
        frame, label_expectations = _label_frame(spec, data.examples)
        checks.append(Check(f"{name}_examples", frame, [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            *label_expectations,
            gxe.ExpectColumnValuesToBeBetween(column="shortest_text", min_value=1),
        ]))
    files = pd.DataFrame([{"split": name, "rows": data.rows,
                           "reject_fraction": sum(data.rejects.values()) / data.rows if data.rows else 1.0}
                          for name, data in (("train", train), ("test", test))])
    checks.append(Check("files", files, [
        gxe.ExpectColumnValuesToBeBetween(column="reject_fraction", min_value=0.0, max_value=max_reject_fraction)]))
    train_keys = {example_key(example) for example in train.examples}
    overlap = pd.DataFrame({"test_example_in_train": [example_key(e) in train_keys for e in test.examples]})
    checks.append(Check("train_test_disjoint", overlap, [
        gxe.ExpectColumnValuesToBeInSet(column="test_example_in_train", value_set=[False])]))
    return run_gate("finetune-input", checks)


def validate_outputs(losses: Sequence[float], metrics: dict[str, float], required: Sequence[str]) -> GateReport:
    steps = pd.DataFrame({"loss_is_finite": [math.isfinite(loss) for loss in losses]})
    reported = pd.DataFrame([{"metric": name, "is_finite": isinstance(value, (int, float)) and math.isfinite(value)}
                             for name, value in metrics.items()] or [{"metric": None, "is_finite": False}])
    return run_gate("finetune-output", [
        Check("steps", steps, [gxe.ExpectTableRowCountToBeBetween(min_value=1),
                               gxe.ExpectColumnValuesToBeInSet(column="loss_is_finite", value_set=[True])]),
        Check("test_metrics", reported, [
            gxe.ExpectColumnDistinctValuesToContainSet(column="metric", value_set=list(required)),
            gxe.ExpectColumnValuesToBeInSet(column="is_finite", value_set=[True]),
        ]),
    ])


def overlapping_examples(train: TaskData, test: TaskData, limit: int = 3) -> list[dict]:
    """A few test records that also occur in the training data, to show in an error message."""
    train_keys = {example_key(example) for example in train.examples}
    return [to_record(e) for e in test.examples if example_key(e) in train_keys][:limit]
