"""Evaluation and fine-tuning tasks for the demo, derived from pages the demo crawl never fetches.

The demo web holds more pages than its dump links; the unlinked ones are held out of the corpus, so tasks built
from their text test the model on documents it never saw (the evaluate flow's contamination check confirms it):

- ``next_{train,test}.jsonl``: "which sentence comes next" multiple choice (Story-Cloze-like, 4 choices,
  distractors from other pages of the same split), fine-tuned and zero-shot. Test items come from every other
  held-out page; training items from the remaining held-out pages and the pages the dump links (labeled data may
  come from the pretraining text, test data may not). With only the held-out pages' 129 training items the
  fine-tuned head scored 0.37-0.40 over three seeds, with 400 items 0.40-0.47. No test page is fetched for
  pretraining or used in fine-tuning, not even for a distractor;
- ``last_word.jsonl``: LAMBADA-style last-word prediction, zero-shot.
"""
from __future__ import annotations

import json
from pathlib import Path

from gptcore.corpus.extract import extract_main_text
from flows.demo.site import SitePage
from gptcore.taskgen import next_sentence_choices, split_sentences

# Whatever tokenizer the demo corpus trains, a byte-level BPE token covers at least one byte, so an answer of at most
# this many UTF-8 bytes (plus its leading space) fits the demo model's 128-token window; 30 words of pydoc's symbols
# can reach 129 tokens.
MAX_ANSWER_BYTES = 120


def page_texts(site_dir: Path, pages: list[SitePage]) -> list[str]:
    """The main text of each page, extracted the way the corpus would have extracted it."""
    return [extract_main_text((site_dir / page.path).read_text(encoding="utf-8")).text for page in pages]


def write_demo_tasks(texts: list[str], out_dir: Path, linked_texts: list[str] = (), max_records: int = 400
                     ) -> dict[str, str]:
    """Write the task files from the held-out pages' texts (and the linked pages', for training items only);
    returns their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def next_sentence(pages: list[str]) -> list[dict]:
        return next_sentence_choices(pages, n_choices=4, seed=0, max_words=30, max_bytes=MAX_ANSWER_BYTES,
                                     max_records=max_records)

    last_words = [{"text": s} for text in texts for s in split_sentences(text) if 6 <= len(s.split()) <= 30]
    files = {"next_train": next_sentence(texts[1::2] + list(linked_texts)), "next_test": next_sentence(texts[0::2]),
             "last_word": last_words[:max_records]}
    paths = {}
    for name, records in files.items():
        if not records:
            raise ValueError(f"the held-out pages gave no {name} records; hold out more pages")
        path = out_dir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths[name] = str(path)
    return paths
