"""Labelled task files → typed examples: a generic CSV / TSV / JSONL loader and readers for the standard files.

Every reader returns a ``TaskData``: the examples, and every row it could not use, counted by reason and listed with
its file and line (``TaskData.rejected``), so ``len(examples) + sum(rejects.values()) == rows``. One bad row never
fails the file; only a file with no usable row at all is an error (``TaskFileError``, saying what to do). Labels are
*not* checked against a declared set here: that is the finetune input contract's job (``data_contracts.finetune``),
which fails the run rather than dropping rows.

Reject reasons:

    undecodable         bytes that are not UTF-8 (or a JSON "\\ud800" escape that is no character)
    malformed_json      a JSONL line (a RACE file) that is not one JSON object
    malformed_row       a CSV/TSV row the csv module cannot parse
    wrong_field_count   a CSV/TSV row with more or fewer fields than the header
    missing_field       a field the record shape needs is absent
    bad_field_type      a text field that is not a string
    empty_text          a text field that is blank
    bad_label           no usable label (GLUE's test files have none)
    bad_choices         fewer than two choices, or not a list
    no_gold_label       SNLI's "-": the annotators did not agree
    unreadable_row      any other error while turning the row into an example (the detail says which)

The generic record shapes (one JSON object per line in a ``.jsonl`` file) are the project-wide contract::

    classification   {"text": str, "label": str}
    entailment       {"premise": str, "hypothesis": str, "label": str}
    similarity       {"text_a": str, "text_b": str, "label": str | float}   # a number means a regression score
    multiple_choice  {"context": str, "choices": [str, ...], "label": int}  # index of the right choice

Standard files map into them: GLUE TSVs (SST-2, CoLA, MNLI, RTE, QNLI, MRPC, QQP, STS-B; GLUE's own test files
have no labels and are rejected row by row as ``bad_label``), SNLI and SciTail JSONL (``snli_format``), RACE JSON
(a file or a folder of them; context = article + question), and the Story Cloze CSV (validation / test layout).
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Union

TaskType = Literal["classification", "entailment", "similarity", "multiple_choice"]
TASK_TYPES: tuple[str, ...] = ("classification", "entailment", "similarity", "multiple_choice")

csv.field_size_limit(sys.maxsize)  # RACE-length passages and long quotes exceed csv's 128 KB default


@dataclass(frozen=True)
class ClassificationExample:
    text: str
    label: str


@dataclass(frozen=True)
class EntailmentExample:
    premise: str
    hypothesis: str
    label: str


@dataclass(frozen=True)
class SimilarityExample:
    text_a: str
    text_b: str
    label: str | float  # a class name, or a score for regression (STS-B)


@dataclass(frozen=True)
class MultipleChoiceExample:
    context: str
    choices: tuple[str, ...]
    label: int  # index into choices


Example = Union[ClassificationExample, EntailmentExample, SimilarityExample, MultipleChoiceExample]
EXAMPLE_TYPES: dict[str, type] = {"classification": ClassificationExample, "entailment": EntailmentExample,
                                  "similarity": SimilarityExample, "multiple_choice": MultipleChoiceExample}


def to_record(example: Example) -> dict:
    """The generic JSONL record of an example (the shapes in this module's docstring)."""
    record = asdict(example)
    if isinstance(example, MultipleChoiceExample):
        record["choices"] = list(example.choices)  # JSON has lists, not tuples
    return record


def texts_of(example: Example) -> list[str]:
    """Every text field of an example, in record order (what "non-empty texts" and overlap checks look at)."""
    if isinstance(example, MultipleChoiceExample):
        return [example.context, *example.choices]
    return [v for k, v in asdict(example).items() if k != "label"]


@dataclass(frozen=True)
class RowReject:
    """One row a reader could not use: the file, the line the row starts on (1-based) and why."""

    file: str
    line: int
    reason: str
    detail: str = ""


@dataclass
class TaskData:
    """What a reader made of one file (or folder, for RACE)."""

    task: TaskType
    source: str
    examples: list[Example] = field(default_factory=list)
    rejects: Counter = field(default_factory=Counter)  # reason -> rows
    rejected: list[RowReject] = field(default_factory=list)  # the same rows, each with its file and line

    @property
    def rows(self) -> int:
        return len(self.examples) + sum(self.rejects.values())

    def reject(self, row: RowReject) -> None:
        self.rejects[row.reason] += 1
        self.rejected.append(row)


class TaskFileError(ValueError):
    """A task file with no usable row at all (each row was rejected, or there were none)."""


class _Reject(Exception):
    """A row that cannot become an example; the message is the reject reason."""


class _Row(NamedTuple):
    """A row as a file reader yields it: where it starts, and the record (or why there is none)."""

    file: str
    line: int
    value: dict | _Reject


# Lone surrogates: undecodable bytes (read with errors="surrogateescape") or a JSON "\ud800" escape. Neither is
# text the tokenizer can encode, so such a row is rejected here rather than crashing training later.
_UNDECODABLE = re.compile("[\ud800-\udfff]")


def is_decodable(text: str) -> bool:
    """Whether ``text`` is real Unicode text (no lone surrogate left by a bad byte or a broken JSON escape)."""
    return _UNDECODABLE.search(text) is None


# -- row → example ---------------------------------------------------------------------------------------------


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        raise _Reject("missing_field")
    if not isinstance(value, str):
        raise _Reject("bad_field_type")
    if not is_decodable(value):
        raise _Reject("undecodable")
    if not value.strip():
        raise _Reject("empty_text")
    return value.strip()


def _class_label(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None or isinstance(value, (list, dict)) or str(value).strip() == "":
        raise _Reject("bad_label")
    if not is_decodable(str(value)):
        raise _Reject("undecodable")
    return str(value).strip()


def _similarity_label(row: dict, key: str, numeric_is_score: bool) -> str | float:
    value = row.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric_is_score:
        return float(value)
    return _class_label(row, key)


def _score_label(row: dict, key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise _Reject("bad_label") from None


def example_from_row(task: TaskType, row: dict, numeric_is_score: bool = True) -> Example:
    """One generic record (already renamed to the generic field names) → an example, or ``_Reject``.

    For similarity, a JSON number as the label means a regression score (``numeric_is_score``); text files
    (CSV/TSV) have no numbers, so their labels are class names.
    """
    if task == "classification":
        return ClassificationExample(_text(row, "text"), _class_label(row, "label"))
    if task == "entailment":
        return EntailmentExample(_text(row, "premise"), _text(row, "hypothesis"), _class_label(row, "label"))
    if task == "similarity":
        return SimilarityExample(_text(row, "text_a"), _text(row, "text_b"),
                                 _similarity_label(row, "label", numeric_is_score))
    if task == "multiple_choice":
        choices = row.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            raise _Reject("bad_choices")
        texts = tuple(_text({"c": c}, "c") for c in choices)
        label = row.get("label")
        if isinstance(label, str) and label.strip().isdecimal():  # isdigit() also takes "²", which int() refuses
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(texts):
            raise _Reject("bad_label")
        return MultipleChoiceExample(_text(row, "context"), texts, label)
    raise ValueError(f"unknown task type {task!r}; choose one of {TASK_TYPES}")


def _collect(task: TaskType, source: str, rows: Iterable[_Row], to_example: Callable[[dict], Example]) -> TaskData:
    data = TaskData(task=task, source=source)
    for row in rows:
        try:
            if isinstance(row.value, _Reject):
                raise row.value
            data.examples.append(to_example(row.value))
        except _Reject as reject:
            data.reject(RowReject(row.file, row.line, str(reject)))
        except Exception as exc:  # one outcome per row: an odd value must not fail the whole file
            data.reject(RowReject(row.file, row.line, "unreadable_row", f"{type(exc).__name__}: {exc}"))
    return data


# -- file formats ----------------------------------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOWrapper:
    """The file as text; a byte that is not UTF-8 becomes a lone surrogate, so the row holding it can be rejected
    while the rest of the file is read (strict decoding would fail the whole file at the first bad byte)."""
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist: pass the path of a CSV, TSV, JSONL or JSON file")
    # -sig: Excel-saved CSVs start with a byte-order mark
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _json_object(text: str) -> dict | _Reject:
    if not is_decodable(text):
        return _Reject("undecodable")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # also ints past Python's 4300-digit limit and absurdly deep nesting
        return _Reject("malformed_json")
    return value if isinstance(value, dict) else _Reject("malformed_json")


class JsonLine(NamedTuple):
    """One non-blank line of a JSONL file: the object it holds, or the reject reason why it holds none."""

    file: str
    line: int
    record: dict | None
    reason: str | None


def jsonl_records(path: str | Path) -> Iterator[JsonLine]:
    """The JSON objects of a JSONL file, line by line; blank lines are not rows. Never raises for a bad line."""
    for row in _jsonl_rows(Path(path)):
        bad = isinstance(row.value, _Reject)
        yield JsonLine(row.file, row.line, None if bad else row.value, str(row.value) if bad else None)


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with _open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield _Row(str(path), number, _json_object(line))


def _delimited_rows(path: Path, delimiter: str, quoted: bool = True, header: list[str] | None = None
                    ) -> Iterator[_Row]:
    """Rows of a CSV/TSV as dicts keyed by the header (the file's first line unless ``header`` is given).

    ``quoted=False`` reads GLUE's TSVs as GLUE's own loaders do: quote characters are ordinary text there.
    A row's line is where it starts (a quoted field may span lines).
    """
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        names = header or next(reader, None)
        if names is None:
            return
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield _Row(str(path), line, _Reject("malformed_row"))
                continue
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if not all(is_decodable(value) for value in values):
                yield _Row(str(path), line, _Reject("undecodable"))
            elif len(values) != len(names):
                yield _Row(str(path), line, _Reject("wrong_field_count"))
            else:
                yield _Row(str(path), line, dict(zip(names, values)))


def _mapped(rows: Iterable[_Row], change: Callable[[dict], dict]) -> Iterator[_Row]:
    for row in rows:
        yield row if isinstance(row.value, _Reject) else row._replace(value=change(row.value))


def _renamed(rows: Iterable[_Row], columns: dict[str, str]) -> Iterator[_Row]:
    """Generic field name → the file's column name; columns not mentioned keep their own names."""
    return _mapped(rows, lambda row: {**row, **{generic: row.get(source) for generic, source in columns.items()}})


GENERIC_FORMATS = ("jsonl", "csv", "tsv")


def load_generic(path: str | Path, task: TaskType, fmt: str = "auto", columns: dict[str, str] | None = None
                 ) -> TaskData:
    """A CSV, TSV (quoted like Excel's, so fields may span lines) or JSONL file of ``task`` records.

    ``columns`` maps the generic field names to the file's (e.g. ``{"text": "sentence"}``); for multiple choice
    from CSV/TSV, ``choices`` names several columns joined by commas (``{"choices": "ending0,ending1"}``).
    ``fmt="auto"`` goes by the file extension.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "tsv"}.get(
            path.suffix.lower(), "")
        if not fmt:
            raise ValueError(f"cannot tell the format of {path} from its extension: pass reader='jsonl', 'csv' or "
                             "'tsv' (or a standard reader such as 'glue-sst2')")
    if fmt not in GENERIC_FORMATS:
        raise ValueError(f"unknown generic format {fmt!r}; choose one of {GENERIC_FORMATS}")
    columns = dict(columns or {})
    choice_columns = columns.pop("choices", None) if fmt != "jsonl" else None
    raw = _jsonl_rows(path) if fmt == "jsonl" else _delimited_rows(path, "," if fmt == "csv" else "\t")
    rows = _renamed(raw, columns)
    if choice_columns:
        names = [c.strip() for c in choice_columns.split(",")]
        rows = _mapped(rows, lambda r: {**r, "choices": [r.get(n) for n in names]})
    return _collect(task, str(path), rows, lambda r: example_from_row(task, r, numeric_is_score=fmt == "jsonl"))


# -- standard datasets -----------------------------------------------------------------------------------------

# GLUE: which columns of each task's TSV hold what. CoLA's train/dev files have no header line.
_GLUE: dict[str, tuple[TaskType, dict[str, str]]] = {
    "glue-sst2": ("classification", {"text": "sentence", "label": "label"}),
    "glue-cola": ("classification", {"text": "sentence", "label": "label"}),
    "glue-mnli": ("entailment", {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}),
    "glue-rte": ("entailment", {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"}),
    # The passage is the premise (it may be cut from the front), the question the hypothesis (kept whole).
    "glue-qnli": ("entailment", {"premise": "sentence", "hypothesis": "question", "label": "label"}),
    "glue-mrpc": ("similarity", {"text_a": "#1 String", "text_b": "#2 String", "label": "Quality"}),
    "glue-qqp": ("similarity", {"text_a": "question1", "text_b": "question2", "label": "is_duplicate"}),
    "glue-stsb": ("similarity", {"text_a": "sentence1", "text_b": "sentence2", "label": "score"}),
}
_COLA_COLUMNS = ["source", "label", "original_label", "sentence"]


def read_glue(path: str | Path, name: str) -> TaskData:
    """A GLUE task TSV (``name`` like ``glue-sst2``): train and dev files (test files have no labels)."""
    if name not in _GLUE:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of {sorted(_GLUE)}")
    task, columns = _GLUE[name]
    path = Path(path)
    header = None
    if name == "glue-cola":  # train/dev start with data; only the (unlabelled) test file has an "index" header
        with _open_text(path) as fh:
            header = None if fh.readline().split("\t")[0].strip() == "index" else _COLA_COLUMNS
    rows = _renamed(_delimited_rows(path, "\t", quoted=False, header=header), columns)
    if name == "glue-stsb":
        def to_example(row: dict) -> Example:
            return SimilarityExample(_text(row, "text_a"), _text(row, "text_b"), _score_label(row, "label"))
    else:
        def to_example(row: dict) -> Example:
            return example_from_row(task, row, numeric_is_score=False)
    return _collect(task, str(path), rows, to_example)


def read_snli(path: str | Path) -> TaskData:
    """SNLI (or MultiNLI / SciTail ``snli_format``) JSONL: sentence1, sentence2, gold_label.

    A gold label of "-" means the annotators did not agree; those rows are rejected as ``no_gold_label``.
    """
    def to_example(row: dict) -> Example:
        if row.get("gold_label") == "-":
            raise _Reject("no_gold_label")
        return EntailmentExample(_text(row, "sentence1"), _text(row, "sentence2"), _class_label(row, "gold_label"))
    return _collect("entailment", str(path), _jsonl_rows(Path(path)), to_example)


def read_race(path: str | Path) -> TaskData:
    """RACE: one JSON object per file (article, questions, options, answers "A".."D"), one example per question.

    ``path`` is one such file or a folder searched recursively (RACE ships ``train/high/*.txt``). The context is
    the article followed by the question, as in GPT-1 section 3.3.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".json")) if path.is_dir() \
        else [path]
    if not files:
        raise FileNotFoundError(f"{path} holds no RACE .txt/.json files: pass a RACE split folder or one file")

    def rows() -> Iterator[_Row]:
        for file in files:
            with _open_text(file) as fh:
                passage = _json_object(fh.read())
            if isinstance(passage, _Reject):
                yield _Row(str(file), 1, passage)
                continue
            article = passage.get("article")
            questions, options, answers = (passage.get(k) or [] for k in ("questions", "options", "answers"))
            if not (isinstance(article, str) and all(isinstance(v, list) for v in (questions, options, answers))
                    and len(questions) == len(options) == len(answers)):
                yield _Row(str(file), 1, _Reject("missing_field"))
                continue
            for question, choices, answer in zip(questions, options, answers):  # a RACE file is one line
                if not isinstance(question, str):
                    yield _Row(str(file), 1, _Reject("missing_field"))
                    continue
                letter = str(answer).strip().upper()
                label = ord(letter) - ord("A") if len(letter) == 1 and letter.isalpha() else -1
                yield _Row(str(file), 1, {"context": f"{article.strip()} {question.strip()}".strip(),
                                          "choices": choices, "label": label})

    return _collect("multiple_choice", str(path), rows(), lambda r: example_from_row("multiple_choice", r))


def read_storycloze(path: str | Path) -> TaskData:
    """Story Cloze Test CSV (validation / test): four story sentences, two endings, AnswerRightEnding 1 or 2."""
    def to_example(row: dict) -> Example:
        try:
            label = int(row.get("AnswerRightEnding", "")) - 1
        except ValueError:
            raise _Reject("bad_label") from None
        context = " ".join(_text(row, f"InputSentence{i}") for i in range(1, 5))
        return example_from_row("multiple_choice", {
            "context": context, "label": label,
            "choices": [row.get("RandomFifthSentenceQuiz1"), row.get("RandomFifthSentenceQuiz2")]})
    return _collect("multiple_choice", str(path), _delimited_rows(Path(path), ","), to_example)


STANDARD_READERS: dict[str, tuple[TaskType, Callable[[Path], TaskData]]] = {
    **{name: (task, lambda p, name=name: read_glue(p, name)) for name, (task, _) in _GLUE.items()},
    "snli": ("entailment", read_snli),
    "scitail": ("entailment", read_snli),
    "race": ("multiple_choice", read_race),
    "storycloze": ("multiple_choice", read_storycloze),
}
READERS: tuple[str, ...] = ("auto", *GENERIC_FORMATS, *STANDARD_READERS)


def load_task_file(path: str | Path, task: TaskType, reader: str = "auto", columns: dict[str, str] | None = None
                   ) -> TaskData:
    """Read ``path`` with ``reader`` (``auto`` | ``jsonl`` | ``csv`` | ``tsv`` | a standard reader name).

    A standard reader fixes the task type; asking for another one is an error rather than a silent reinterpretation.
    Raises ``TaskFileError`` when no row of the file is usable.
    """
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}; choose one of {TASK_TYPES}")
    if reader in STANDARD_READERS:
        reader_task, read = STANDARD_READERS[reader]
        if reader_task != task:
            raise ValueError(f"reader {reader!r} makes {reader_task} examples but task={task!r}: "
                             f"pass task={reader_task!r} or another reader")
        return _usable(read(Path(path)), reader)
    if reader in ("auto", *GENERIC_FORMATS):
        return _usable(load_generic(path, task, reader, columns), reader)
    raise ValueError(f"unknown reader {reader!r}; choose one of {READERS}")


# What to do when every row of a file was rejected for mostly this reason.
_FIXES = {
    "undecodable": "save the file as UTF-8 text",
    "malformed_json": "give JSON Lines (one JSON object per line) or pass reader='csv' / 'tsv'",
    "malformed_row": "check the file's quoting, or pass reader='tsv' / 'csv' for the other delimiter",
    "wrong_field_count": "check the delimiter (reader='csv' or 'tsv') and that every row has the header's fields",
    "missing_field": "map the generic field names to the file's columns with columns={...}, or pass the standard "
                     "reader for this file",
    "bad_label": "give a labelled file (GLUE's test files have no labels; use train/dev) or map the label column "
                 "with columns={'label': ...}",
}


def _usable(data: TaskData, reader: str) -> TaskData:
    """``data`` when it has at least one example; otherwise the file-level error, saying why and what to do."""
    if data.examples:
        return data
    if not data.rejected:
        raise TaskFileError(f"task file {data.source} holds no rows: pass a file with at least one {data.task} "
                            "record")
    reason, count = data.rejects.most_common(1)[0]
    first = next(r for r in data.rejected if r.reason == reason)
    fix = _FIXES.get(reason, f"check the file against the {data.task} record shape and reader={reader!r}")
    raise TaskFileError(f"task file {data.source} has no usable row: all {data.rows} rows were rejected "
                        f"({dict(data.rejects)}; first {reason} at {first.file} line {first.line}): {fix}")
