"""gptcore.taskdata readers (generic and standard formats, written here in their real layouts) and gptcore.taskgen."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptcore.taskdata import (ClassificationExample, EntailmentExample, MultipleChoiceExample, SimilarityExample,
                              load_task_file, to_record)
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
                                        {"context": "c", "choices": ["a", ""], "label": 0}])
    assert load_task_file(path, "multiple_choice").rejects == {"bad_label": 1, "bad_choices": 1, "empty_text": 1}


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


# -- standard datasets -----------------------------------------------------------------------------------------


def test_glue_sst2_and_cola(tmp_path):
    sst2 = write(tmp_path / "sst2.tsv", 'sentence\tlabel\nit \'s a "charming" journey \t1\nflat \t0\n')
    assert load_task_file(sst2, "classification", "glue-sst2").examples == [
        ClassificationExample('it \'s a "charming" journey', "1"), ClassificationExample("flat", "0")]
    cola = write(tmp_path / "in_domain_train.tsv", "gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank.\n")
    assert load_task_file(cola, "classification", "glue-cola").examples == [
        ClassificationExample("Our friends won't buy this.", "1"), ClassificationExample("They drank.", "0")]


def test_glue_test_files_without_labels_are_rejected_row_by_row(tmp_path):
    path = write(tmp_path / "test.tsv", "index\tsentence\n0\tuneasy mishmash\n")
    data = load_task_file(path, "classification", "glue-sst2")
    assert data.examples == [] and data.rejects == {"bad_label": 1}


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


def test_next_sentence_choices_need_enough_text():
    with pytest.raises(ValueError, match="pass more text"):
        next_sentence_choices(["One short sentence here."], n_choices=4)
