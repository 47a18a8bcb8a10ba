"""The dataset card of a corpus version, from hand-made counts: the Hub's YAML keys as datasets reads them, the size
categories, and a corpus with no documents or no rejects."""
from __future__ import annotations

import pytest
import yaml
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from flows.charts import bar_chart_svg
from flows.dataset_card import DATA_FILES, LANGUAGES_IMAGE, LENGTHS_IMAGE, dataset_card, size_category

UPSTREAM = [{"kind": "dump", "path": "/in/RS_2019-06.zst", "bytes": 1200, "sha256": "ab" * 32},
            {"kind": "version", "stage": "corpus", "version": "v0001", "checksum": "cd" * 32}]


def counts(documents: int, rejects: int, languages: dict[str, int]) -> dict:
    return {"documents": documents, "rejects": rejects, "rejects_by_reason": {"links:low_score": rejects} if rejects else {},
            "links": 3, "link_filter": {"records_read": documents + rejects, "kept_submissions": documents},
            "accounting": {"reddit": {"inputs": documents + rejects, "kept": documents, "rejected": rejects}},
            "statistics": {"chars": 1500 * documents, "languages": languages,
                           "top_domains": [{"domain": "example.com", "documents": documents, "chars": 1500 * documents}]
                           if documents else [],
                           "lengths": [{"min_chars": 1000, "documents": documents}] if documents else [],
                           "fetched_at": {}, "dedup": {"by_reason": {}, "by_kept_version": {}}}}


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_the_front_matter_is_what_datasets_and_the_hub_read():
    card = dataset_card("v0002", {"minhash": {"bands": 16}}, UPSTREAM, counts(1200, 5, {"en": 1100, "de": 100}))
    meta = front_matter(card.readme)
    configs = MetadataConfigs.from_dataset_card_data(DatasetCardData(**meta))
    assert configs == {"default": {"data_files": [{"split": "train", "path": DATA_FILES}]},
                       "rejects": {"data_files": [{"split": "train", "path": "rejects/*.parquet"}]}}
    assert configs.get_default_config_name() == "default"
    assert (meta["language"], meta["multilinguality"], meta["size_categories"]) == (["en", "de"], "multilingual",
                                                                                  ["1K<n<10K"])
    assert f"![Languages]({LANGUAGES_IMAGE})" in card.readme and f"![Lengths]({LENGTHS_IMAGE})" in card.readme
    assert "| corpus v0001 | `" + "cd" * 32 + "` |" in card.readme  # lineage with the checksum
    assert "| dump | `RS_2019-06.zst` | 1,200 | `" + "ab" * 32 + "` |" in card.readme


def test_the_artifact_shows_the_same_body_with_the_images_inline():
    card = dataset_card("v0001", {}, UPSTREAM, counts(10, 1, {"en": 10}))
    assert card.artifact.count("data:image/svg+xml;base64,") == 2
    assert f"]({LANGUAGES_IMAGE})" not in card.artifact
    assert card.readme.split("---\n\n", 1)[1].split("## Languages")[0] == card.artifact.split("## Languages")[0]
    assert card.artifact.split("## Lineage")[1] == card.readme.split("## Lineage")[1]
    assert set(card.images) == {LENGTHS_IMAGE, LANGUAGES_IMAGE}
    assert all(svg.startswith("<svg") and svg.count("<rect") == 2 for svg in card.images.values())


def test_a_corpus_with_no_documents_says_so_and_has_no_rejects_config_when_nothing_was_rejected():
    card = dataset_card("v0003", {}, UPSTREAM, counts(0, 0, {}))
    meta = front_matter(card.readme)
    assert [c["config_name"] for c in meta["configs"]] == ["default"]  # datasets refuses a config of empty files
    assert "language" not in meta and meta["size_categories"] == ["n<1K"]
    assert "holds no documents" in card.readme and card.images == {}


@pytest.mark.parametrize("documents, category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"),
                                                 (2_500_000, "1M<n<10M"), (10**12, "n>1T")])
def test_size_category_follows_the_hubs_bounds(documents, category):
    assert size_category(documents) == category


def test_error_bars_are_drawn_only_for_bars_with_an_error_and_must_match_the_bars():
    svg = bar_chart_svg([("a", 0.5), ("b", 0.25)], title="acc", x_label="x", y_label="y", errors=[0.1, 0.0])
    assert svg.count("<path") == 1 and "a: 0.5 ± 0.1" in svg and "b: 0.25</title>" in svg
    with pytest.raises(ValueError, match="2 bars but 1 error"):
        bar_chart_svg([("a", 0.5), ("b", 0.25)], title="acc", x_label="x", y_label="y", errors=[0.1])


def test_a_chart_without_bars_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'lengths' has no bars"):
        bar_chart_svg([], title="lengths", x_label="x", y_label="y")
