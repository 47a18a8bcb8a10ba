"""gptcore.taskdata readers (generic and standard formats, written here in their real layouts) and gptcore.taskgen."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gptcore.taskdata import (ClassificationExample, EntailmentExample, MultipleChoiceExample, RowReject,
                              SimilarityExample, TaskFileError, jsonl_records, load_task_file, to_record)
from gptcore.taskgen import next_sentence_choices, split_sentences


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


# -- generic files ---------------------------------------------------------------------------------------------


def test_generic_jsonl_records_become_typed_examples_and_bad_rows_are_counted_by_reason(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", [
        {"text": "a fine day", "label": "pos"}, {"text": "rain", "label": 0}, "{not json",
        {"text": "   ", "label": "neg"}, {"label": "neg"}, {"text": "ok", "label": None}])
    data = load_task_file(path, "classification")
    assert data.examples == [ClassificationExample("a fine day", "pos"), ClassificationExample("rain", "0")]
    assert data.rejects == {"malformed_json": 1, "empty_text": 1, "missing_field": 1, "bad_label": 1}
    assert data.rows == 6


def test_every_generic_record_shape_round_trips_through_jsonl(tmp_path):
    records = {
        "classification": {"text": "t", "label": "a"},
        "entailment": {"premise": "p", "hypothesis": "h", "label": "entailment"},
        "similarity": {"text_a": "x", "text_b": "y", "label": 4.5},
        "multiple_choice": {"context": "c", "choices": ["a", "b", "c"], "label": 2},
    }
    for task, record in records.items():
        data = load_task_file(jsonl(tmp_path / f"{task}.jsonl", [record]), task)
        assert [to_record(e) for e in data.examples] == [record]


def test_multiple_choice_labels_must_index_a_choice(tmp_path):
    path = jsonl(tmp_path / "mc.jsonl", [{"context": "c", "choices": ["a", "b"], "label": 2},
                                        {"context": "c", "choices": ["a"], "label": 0},
                                        {"context": "c", "choices": ["a", ""], "label": 0},
                                        {"context": "c", "choices": ["a", "b"], "label": "\u00b9"},  # superscript 1
                                        {"context": "c", "choices": ["a", "b"], "label": "1"}])
    data = load_task_file(path, "multiple_choice")
    assert data.examples == [MultipleChoiceExample("c", ("a", "b"), 1)]
    assert data.rejects == {"bad_label": 2, "bad_choices": 1, "empty_text": 1}


def test_csv_with_a_column_mapping_and_quoted_multiline_fields(tmp_path):
    path = write(tmp_path / "reviews.csv", 'review,stars\n"great, really\nsecond line",5\nmeh,2\nbroken\n')
    data = load_task_file(path, "classification", columns={"text": "review", "label": "stars"})
    assert data.examples == [ClassificationExample("great, really\nsecond line", "5"), ClassificationExample("meh", "2")]
    assert data.rejects == {"wrong_field_count": 1}


def test_tsv_multiple_choice_takes_its_choices_from_several_columns(tmp_path):
    path = write(tmp_path / "mc.tsv", "story\tend1\tend2\tanswer\nHe sat.\tHe slept.\tHe flew.\t0\n")
    data = load_task_file(path, "multiple_choice", columns={"context": "story", "choices": "end1,end2",
                                                            "label": "answer"})
    assert data.examples == [MultipleChoiceExample("He sat.", ("He slept.", "He flew."), 0)]


def test_csv_similarity_labels_are_class_names(tmp_path):
    path = write(tmp_path / "pairs.csv", "text_a,text_b,label\nx,y,1\n")
    assert load_task_file(path, "similarity").examples == [SimilarityExample("x", "y", "1")]


def test_an_unknown_extension_or_reader_is_an_error_saying_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="reader='jsonl'"):
        load_task_file(write(tmp_path / "data.dat", ""), "classification")
    with pytest.raises(ValueError, match="unknown reader"):
        load_task_file(write(tmp_path / "data.csv", ""), "classification", reader="parquet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task_file(tmp_path / "missing.jsonl", "classification")


# -- damaged files: a fault rejects its row (file and line named), the other rows are kept -----------------------

# reader: (task, file name, header lines, a good row numbered i, the row with each fault). A RACE "row" is a file.
_STORY_HEADER = (b"InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,RandomFifthSentenceQuiz1,"
                 b"RandomFifthSentenceQuiz2,AnswerRightEnding\n")
_LONG_INT = b"9" * 5000  # past Python's 4300-digit int limit: json.loads raises a plain ValueError


def _race(article: bytes) -> bytes:
    return b'{"article": "' + article + b'", "questions": ["Q?"], "options": [["a", "b"]], "answers": ["A"]}'


FORMATS = {
    "jsonl": ("classification", "f.jsonl", b"", lambda i: b'{"text": "row %d", "label": "pos"}' % i, {
        "undecodable": b'{"text": "caf\xe9", "label": "pos"}',
        "undecodable_escape": b'{"text": "half \\ud800 a pair", "label": "pos"}',
        "malformed_json": b'{"text": "cut off',
        "not_an_object": b'["row", "pos"]',
        "deep_nesting": b"[" * 100_000,
        "huge_int": b'{"text": "x", "label": ' + _LONG_INT + b"}"}),
    "csv": ("classification", "f.csv", b"text,label\n", lambda i: b"row %d,pos" % i, {
        "undecodable": b"caf\xe9,pos",
        "undecodable_label": b"fine,p\xffs",
        "wrong_field_count": b"row,pos,extra"}),
    "tsv": ("classification", "f.tsv", b"text\tlabel\n", lambda i: b"row %d\tpos" % i, {
        "undecodable": b"\x80\x81\tpos",
        "wrong_field_count": b"just one field"}),
    "glue-sst2": ("classification", "sst2.tsv", b"sentence\tlabel\n", lambda i: b"row %d\t1" % i, {
        "undecodable": b"na\xefve\t1"}),
    "glue-cola": ("classification", "cola.tsv", b"", lambda i: b"gj04\t1\t\trow %d" % i, {
        "undecodable": b"gj04\t1\t\tcaf\xe9"}),
    "snli": ("entailment", "snli.jsonl", b"",
             lambda i: b'{"gold_label": "neutral", "sentence1": "row %d", "sentence2": "h"}' % i, {
                 "undecodable": b'{"gold_label": "neutral", "sentence1": "\xc3(", "sentence2": "h"}',
                 "malformed_json": b'{"gold_label": "neutral"'}),
    "storycloze": ("multiple_choice", "cloze.csv", _STORY_HEADER, lambda i: b"id%d,A,B,C,D,E1,E2,1" % i, {
        "undecodable": b"id9,A,B\xff,C,D,E1,E2,1"}),
    "race": ("multiple_choice", "race", b"", lambda i: _race(b"row %d" % i), {
        "undecodable": _race(b"caf\xe9"),
        "malformed_json": b'{"article": "cut',
        "not_an_object": b"[]",
        "options_not_a_list": b'{"article": "a", "questions": ["Q?"], "options": 3, "answers": ["A"]}'}),
}
REASONS = {"undecodable_escape": "undecodable", "undecodable_label": "undecodable", "not_an_object": "malformed_json",
           "deep_nesting": "malformed_json", "huge_int": "malformed_json", "options_not_a_list": "missing_field"}
CASES = [(reader, fault) for reader, (*_, faults) in FORMATS.items() for fault in faults]


def write_rows(tmp_path: Path, reader: str, rows: list[bytes]) -> tuple[Path, list[tuple[Path, int]]]:
    """The file (a folder of files for RACE) and where each row starts: (file, line)."""
    _, name, header, *_ = FORMATS[reader]
    if reader == "race":
        folder = tmp_path / name
        folder.mkdir()
        for i, row in enumerate(rows):
            (folder / f"{i}.txt").write_bytes(row)
        return folder, [(folder / f"{i}.txt", 1) for i in range(len(rows))]
    path = tmp_path / name
    path.write_bytes(header + b"".join(row + b"\n" for row in rows))
    first = header.count(b"\n") + 1
    return path, [(path, first + i) for i in range(len(rows))]


@pytest.mark.parametrize("reader, fault", CASES, ids=[f"{r}-{f}" for r, f in CASES])
def test_a_damaged_row_is_rejected_with_its_file_and_line_and_the_other_rows_are_kept(tmp_path, reader, fault):
    task, _, _, good, faults = FORMATS[reader]
    path, where = write_rows(tmp_path, reader, [good(1), faults[fault], good(2)])
    data = load_task_file(path, task, reader)
    assert len(data.examples) == 2 and data.rows == 3
    bad_file, bad_line = where[1]
    assert data.rejected == [RowReject(str(bad_file), bad_line, REASONS.get(fault, fault))]
    assert data.rejects == {REASONS.get(fault, fault): 1}


def test_a_row_is_located_at_the_line_it_starts_on_when_quoted_fields_span_lines(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b'text,label\n"two\nlines",pos\n"caf\xe9\nagain",neg\nok,pos\n')
    data = load_task_file(path, "classification")
    assert data.examples == [ClassificationExample("two\nlines", "pos"), ClassificationExample("ok", "pos")]
    assert data.rejected == [RowReject(str(path), 4, "undecodable")]


@pytest.mark.parametrize("reader, content, message", [
    ("jsonl", b'{"text": "caf\xe9", "label": "pos"}\n\xff\xfe\n', r"first undecodable at .*f\.jsonl line 1\): save "
                                                                  r"the file as UTF-8"),
    ("jsonl", b"text,label\nfine,pos\n", r"malformed_json.*give JSON Lines"),
    ("csv", b"sentence,stars\nfine,5\n", r"missing_field.*columns=\{\.\.\.\}"),
    ("csv", b"", r"holds no rows"),
    ("csv", b"text,label\n\n\n", r"holds no rows"),
])
def test_a_file_without_any_usable_row_is_refused_naming_the_file_and_what_to_do(tmp_path, reader, content, message):
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with pytest.raises(TaskFileError, match=f"task file {re.escape(str(path))} .*{message}"):
        load_task_file(path, "classification", reader)


def test_jsonl_records_yields_each_line_or_its_reject_reason(tmp_path):
    path = tmp_path / "lambada.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{"text": "b\xff"}\n{oops\n')
    assert list(jsonl_records(path)) == [(str(path), 1, {"text": "a"}, None), (str(path), 3, None, "undecodable"),
                                         (str(path), 4, None, "malformed_json")]


# -- standard datasets -----------------------------------------------------------------------------------------


def test_glue_sst2_and_cola(tmp_path):
    sst2 = write(tmp_path / "sst2.tsv", 'sentence\tlabel\nit \'s a "charming" journey \t1\nflat \t0\n')
    assert load_task_file(sst2, "classification", "glue-sst2").examples == [
        ClassificationExample('it \'s a "charming" journey', "1"), ClassificationExample("flat", "0")]
    cola = write(tmp_path / "in_domain_train.tsv", "gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank.\n")
    assert load_task_file(cola, "classification", "glue-cola").examples == [
        ClassificationExample("Our friends won't buy this.", "1"), ClassificationExample("They drank.", "0")]


def test_glue_test_files_without_labels_are_rejected_row_by_row_and_then_refused_as_a_file(tmp_path):
    path = write(tmp_path / "test.tsv", "index\tsentence\n0\tuneasy mishmash\n1\tflat\n")
    with pytest.raises(TaskFileError, match=r"all 2 rows were rejected \({'bad_label': 2}.*GLUE's test files have no"):
        load_task_file(path, "classification", "glue-sst2")


def test_glue_entailment_tasks(tmp_path):
    mnli = write(tmp_path / "mnli.tsv", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
                 "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
                 "0\t1\t1e\tgov\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tCats purr.\tCats make sounds.\tentailment\t"
                 "entailment\n")
    rte = write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA dog ran.\tAn animal ran.\tentailment\n")
    qnli = write(tmp_path / "qnli.tsv", "index\tquestion\tsentence\tlabel\n0\tWho ran?\tA dog ran.\tentailment\n")
    assert load_task_file(mnli, "entailment", "glue-mnli").examples == [
        EntailmentExample("Cats purr.", "Cats make sounds.", "entailment")]
    assert load_task_file(rte, "entailment", "glue-rte").examples == [
        EntailmentExample("A dog ran.", "An animal ran.", "entailment")]
    assert load_task_file(qnli, "entailment", "glue-qnli").examples == [
        EntailmentExample("A dog ran.", "Who ran?", "entailment")]


def test_glue_similarity_tasks(tmp_path):
    mrpc = write(tmp_path / "mrpc.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said.\tHe stated.\n")
    qqp = write(tmp_path / "qqp.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tWhy?\tHow come?\t1\n")
    stsb = write(tmp_path / "stsb.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                 "sentence2\tscore\n0\tmain\tf\t2012\t1\tnone\tnone\tA plane takes off.\tA jet departs.\t4.8\n"
                 "1\tmain\tf\t2012\t2\tnone\tnone\tA cat.\tA dog.\tn/a\n")
    assert load_task_file(mrpc, "similarity", "glue-mrpc").examples == [SimilarityExample("He said.", "He stated.", "1")]
    assert load_task_file(qqp, "similarity", "glue-qqp").examples == [SimilarityExample("Why?", "How come?", "1")]
    data = load_task_file(stsb, "similarity", "glue-stsb")
    assert data.examples == [SimilarityExample("A plane takes off.", "A jet departs.", 4.8)]
    assert data.rejects == {"bad_label": 1}


def test_snli_and_scitail_jsonl_reject_pairs_without_a_gold_label(tmp_path):
    path = jsonl(tmp_path / "snli.jsonl", [
        {"gold_label": "neutral", "sentence1": "A man sleeps.", "sentence2": "A man dreams.", "pairID": "1"},
        {"gold_label": "-", "sentence1": "A man.", "sentence2": "A woman.", "pairID": "2"}])
    for reader in ("snli", "scitail"):
        data = load_task_file(path, "entailment", reader)
        assert data.examples == [EntailmentExample("A man sleeps.", "A man dreams.", "neutral")]
        assert data.rejects == {"no_gold_label": 1}


def test_race_reads_a_folder_of_passages_one_example_per_question(tmp_path):
    folder = tmp_path / "RACE" / "train" / "high"
    folder.mkdir(parents=True)
    write(folder / "1.txt", json.dumps({"id": "high1.txt", "article": "Tom has a cat.",
                                        "questions": ["What does Tom have?", "Who has a cat?"],
                                        "options": [["a dog", "a cat", "a cow", "a fish"], ["Tom", "Ann", "Bo", "Al"]],
                                        "answers": ["B", "A"]}))
    write(folder / "2.txt", "{truncated")
    data = load_task_file(tmp_path / "RACE", "multiple_choice", "race")
    assert data.examples == [
        MultipleChoiceExample("Tom has a cat. What does Tom have?", ("a dog", "a cat", "a cow", "a fish"), 1),
        MultipleChoiceExample("Tom has a cat. Who has a cat?", ("Tom", "Ann", "Bo", "Al"), 0)]
    assert data.rejects == {"malformed_json": 1}


def test_story_cloze_csv(tmp_path):
    path = write(tmp_path / "cloze_test.csv", "InputStoryid,InputSentence1,InputSentence2,InputSentence3,"
                 "InputSentence4,RandomFifthSentenceQuiz1,RandomFifthSentenceQuiz2,AnswerRightEnding\n"
                 'id1,Ann woke.,She ran.,"She was late, again.",She hurried.,She made it.,She flew away.,1\n')
    assert load_task_file(path, "multiple_choice", "storycloze").examples == [MultipleChoiceExample(
        "Ann woke. She ran. She was late, again. She hurried.", ("She made it.", "She flew away."), 0)]


def test_a_standard_reader_refuses_another_task_type(tmp_path):
    with pytest.raises(ValueError, match="task='entailment'"):
        load_task_file(tmp_path / "x.tsv", "classification", "glue-rte")


# -- gptcore.taskgen ---------------------------------------------------------------------------------------------


STORY = ("Mr. Bennet came home late. He found the house quiet and dark. The servants had gone to bed early. "
         "He lit a candle in the hall. Upstairs, a door creaked open slowly. Elizabeth looked down at him. "
         "\"You are late again,\" she said softly. He smiled and climbed the stairs. The clock struck twelve. "
         "Outside the wind rose over the fields.")
OTHER = ("The ship left the harbour at dawn. Sailors sang as they hauled the ropes. The captain watched the sky "
         "closely. Clouds gathered in the west by noon. Rain fell hard on the deck. Nobody slept that night at all.")


def test_sentences_split_at_ends_but_not_after_titles_and_keep_closing_quotes():
    sentences = split_sentences('Mr. Darcy bowed.\n"Is it so?" she asked. Yes! It was.')
    assert sentences == ["Mr. Darcy bowed.", '"Is it so?" she asked.', "Yes!", "It was."]


def test_next_sentence_records_have_the_true_continuation_among_distractors_from_the_documents():
    records = next_sentence_choices([STORY, OTHER], n_choices=3, seed=1, context_sentences=4, min_words=3)
    story = split_sentences(STORY)
    assert records[0]["context"] == " ".join(story[:4])
    assert records[0]["choices"][records[0]["label"]] == story[4]
    everything = set(story) | set(split_sentences(OTHER))
    for record in records:
        assert len(record["choices"]) == len(set(record["choices"])) == 3
        assert set(record["choices"]) <= everything
        assert not set(record["choices"]) & set(split_sentences(record["context"]))


def test_next_sentence_records_are_deterministic_by_seed_and_place_answers_at_random():
    many = [STORY, OTHER] * 20
    first, again = next_sentence_choices(many, seed=3), next_sentence_choices(many, seed=3)
    assert first == again and first != next_sentence_choices(many, seed=4)
    assert len({record["label"] for record in first}) == 4


def test_max_bytes_bounds_every_choice_and_skips_only_windows_whose_answer_is_longer():
    many = [STORY, OTHER] * 20
    longest = max(len(s.encode()) for s in split_sentences(STORY + " " + OTHER))
    limit = longest - 1
    bounded, unbounded = next_sentence_choices(many, seed=3, max_bytes=limit), next_sentence_choices(many, seed=3)
    assert bounded and all(len(c.encode()) <= limit for r in bounded for c in r["choices"])
    answers = [r["choices"][r["label"]] for r in unbounded]
    assert len(bounded) == sum(len(a.encode()) <= limit for a in answers)


def test_next_sentence_choices_need_enough_text():
    with pytest.raises(ValueError, match="pass more text"):
        next_sentence_choices(["One short sentence here."], n_choices=4)
