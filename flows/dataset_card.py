"""The dataset card of a corpus version: ``README.md`` in the Hugging Face datasets card format, written into the
version folder (and so listed in its manifest), and shown in Prefect as a markdown artifact.

    README.md             YAML front matter, then what the corpus holds and how it was made
    images/lengths.svg    documents per length bin
    images/languages.svg  documents per language

The front matter's ``configs`` (the keys ``datasets.utils.metadata.MetadataConfigs`` reads) name the Parquet shards,
so ``datasets.load_dataset(<version folder>)`` opens the documents as they are, and never takes the manifest, the
fetch log or the rejects for data; the rejects are a config of their own. Rendering only: the figures come from
the manifest's counts (``gptcore.corpus.accounting``) and upstream entries (``flows.lineage``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from flows.charts import bar_chart_svg, svg_markdown_image
from gptcore.corpus.accounting import TOP_DOMAINS
from gptcore.corpus.records import DOC_SCHEMA
from gptcore.files import atomic_write_text

README = "README.md"
DATA_FILES = "data/part-*.parquet"
REJECT_FILES = "rejects/*.parquet"
LENGTHS_IMAGE, LANGUAGES_IMAGE = "images/lengths.svg", "images/languages.svg"
MAX_LISTED_FILES = 20  # input files listed by name; the manifest lists them all
# The Hub's size categories: the upper bound of each, in documents.
SIZE_CATEGORIES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                   (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                   (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))


def size_category(documents: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if documents < bound), "n>1T")


@dataclass(frozen=True)
class DatasetCard:
    readme: str  # README.md: the front matter, then the body with the images by their path in the version folder
    artifact: str  # the body with the images inline: a Prefect artifact has no folder to resolve paths against
    images: dict[str, str]  # path in the version folder → SVG

    def write(self, folder: Path) -> None:
        atomic_write_text(folder / README, self.readme)
        for path, svg in self.images.items():
            atomic_write_text(folder / path, svg)


def front_matter(version: str, counts: dict) -> dict:
    """The Hub's metadata: configs pointing at the shards, languages, size, task; the license is unknown because
    every document keeps its author's."""
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES}]}]
    if counts["rejects"]:  # datasets refuses a config whose files hold no rows
        configs.append({"config_name": "rejects", "data_files": [{"split": "train", "path": REJECT_FILES}]})
    languages = list(counts["statistics"]["languages"])
    meta = {"configs": configs, "pretty_name": f"gptforge corpus {version}"}
    if languages:
        meta |= {"language": languages, "multilinguality": "monolingual" if len(languages) == 1 else "multilingual"}
    return meta | {"size_categories": [size_category(counts["documents"])], "license": "unknown",
                   "task_categories": ["text-generation"], "task_ids": ["language-modeling"],
                   "language_creators": ["found"], "annotations_creators": ["no-annotation"],
                   "source_datasets": ["original"], "tags": ["gptforge"]}


def dataset_card(version: str, parameters: dict, upstream: list[dict], counts: dict) -> DatasetCard:
    """The card of a corpus version from what its manifest will say (parameters, upstream, counts)."""
    stats = counts["statistics"]
    images = {}
    if stats["lengths"]:
        images[LENGTHS_IMAGE] = bar_chart_svg([(f"{b['min_chars']:,}", b["documents"]) for b in stats["lengths"]],
                                              title=f"corpus {version}: documents by length",
                                              x_label="characters (at least)", y_label="documents")
    if stats["languages"]:
        images[LANGUAGES_IMAGE] = bar_chart_svg(list(stats["languages"].items()),
                                                title=f"corpus {version}: documents by language",
                                                x_label="language (ISO 639)", y_label="documents")

    def body(image: Callable[[str, str], str]) -> str:
        def figure(path: str, title: str, text: str) -> str:
            return f"## {title}\n\n{image(path, title)}\n\n{text}" if path in images else ""

        sections = [_summary(version, counts), _loading(version, counts), _columns(), _sources(upstream, counts),
                    _filters(counts),
                    figure(LANGUAGES_IMAGE, "Languages", _table(["language", "documents"], stats["languages"].items())),
                    figure(LENGTHS_IMAGE, "Lengths", f"{stats['chars']:,} characters in all; each bin starts at the "
                                                     "length shown (the first also holds shorter documents)."),
                    _domains(stats), _dedup(parameters, stats), _contamination(), _lineage(upstream), _license()]
        return "\n\n".join(s for s in sections if s) + "\n"

    front = yaml.safe_dump(front_matter(version, counts), sort_keys=False, allow_unicode=True)
    return DatasetCard(readme=f"---\n{front}---\n\n" + body(lambda path, alt: f"![{alt}]({path})"),
                       artifact=body(lambda path, alt: svg_markdown_image(images[path], alt)), images=images)


# ---------------------------------------------------------------------------------------------------------------------
# The body's sections


def _table(header: list[str], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    text = f"{value:,}" if isinstance(value, int) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(version: str, counts: dict) -> str:
    sources = ", ".join(sorted(counts["accounting"])) or "no source"
    empty = ("\n\nThis version holds no documents: every input item was rejected or is a duplicate of an earlier "
             "version (see the filters below), so `load_dataset` has no rows to open.") if not counts["documents"] else ""
    return (f"# gptforge corpus {version}\n\n{counts['documents']:,} documents ({counts['statistics']['chars']:,} "
            f"characters) from {sources}, built by gptforge's build-corpus (the GPT-2 WebText recipe: Reddit-linked "
            f"pages, WARC files, text files). Every input item ended either as a document (`data/`) or as a reject "
            f"with its reason (`rejects/`); `manifest.json` lists every file of this folder with its sha256.{empty}")


def _loading(version: str, counts: dict) -> str:
    lines = ["## Loading", "", "```python", "from datasets import load_dataset", "",
             f'documents = load_dataset("corpus/{version}", split="train")  # this folder']
    if counts["rejects"]:
        lines.append(f'rejects = load_dataset("corpus/{version}", "rejects", split="train")  # one row per reject')
    return "\n".join(lines + ["```"])


def _columns() -> str:
    return "## Columns\n\n" + _table(["column", "type"], ((f"`{f.name}`", f"`{f.type}`") for f in DOC_SCHEMA)) + (
        "\n\n`input` names where a document's bytes are: a path inside this folder (`warc/…`, with `input_offset` "
        "the byte offset of its WARC record) or the absolute path of an input file that was not copied, as the "
        "manifest's upstream names it.")


def _sources(upstream: list[dict], counts: dict) -> str:
    fetched = counts["statistics"]["fetched_at"]
    per_source = _table(["source", "items read", "kept", "rejected", "first fetched", "last fetched"],
                        ((s, c["inputs"], c["kept"], c["rejected"], *fetched.get(s, ["—", "—"]))
                         for s, c in sorted(counts["accounting"].items())))
    files = [up for up in upstream if up["kind"] != "version"]
    listed = _table(["kind", "file", "bytes", "sha256"],
                    ((up["kind"], f"`{Path(up['path']).name}`", up["bytes"], f"`{up['sha256']}`")
                     for up in files[:MAX_LISTED_FILES]))
    more = f"\n\n… and {len(files) - MAX_LISTED_FILES:,} more input files (see `manifest.json`)." \
        if len(files) > MAX_LISTED_FILES else ""
    return f"## Sources\n\n{per_source}\n\nInput files:\n\n{listed}{more}"


def _filters(counts: dict) -> str:
    rows = [(*key.split(":", 1), n) for key, n in sorted(counts["rejects_by_reason"].items())]
    text = ("## Filters\n\nEvery reject by step and reason (the settings are the manifest's `parameters`: `links`, "
            "`fetch`, `process.quality`, `minhash`):\n\n" + _table(["step", "reason", "items"], rows))
    if link_filter := counts.get("link_filter"):
        text += (f"\n\nLink filtering read {link_filter.get('records_read', 0):,} submissions and kept "
                 f"{link_filter.get('kept_submissions', 0):,}, linking {counts.get('links', 0):,} distinct pages.")
    return text


def _domains(stats: dict) -> str:
    if not stats["top_domains"]:
        return ""
    return ("## Top domains\n\nThe domains (URL hosts) with most documents, at most "
            f"{TOP_DOMAINS}:\n\n"
            + _table(["domain", "documents", "characters"],
                     ((d["domain"], d["documents"], d["chars"]) for d in stats["top_domains"])))


def _dedup(parameters: dict, stats: dict) -> str:
    minhash = parameters.get("minhash", {})
    how = ", ".join(f"{k} {v}" for k, v in minhash.items())
    by_version = _table(["copy kept in", "duplicates dropped"], stats["dedup"]["by_kept_version"].items())
    by_reason = _table(["reason", "duplicates dropped"], stats["dedup"]["by_reason"].items())
    return (f"## Deduplication\n\nExact duplicates (same normalized text) and near duplicates (MinHash LSH: {how}) "
            "were dropped within this version and against the earlier corpus versions under Lineage (the "
            f"highest-scored copy is kept).\n\n{by_reason}\n\n{by_version}")


def _contamination() -> str:
    return ("## Contamination\n\nNot measured when a corpus is built: the evaluate stage measures each evaluation "
            "task's 8-gram overlap with the corpus its run was trained on and reports it beside the task's metrics.")


def _lineage(upstream: list[dict]) -> str:
    versions = [up for up in upstream if up["kind"] == "version"]
    n_files = len(upstream) - len(versions)
    rows = [(f"{up['stage']} {up['version']}", f"`{up['checksum']}`") for up in versions]
    table = _table(["upstream version", "manifest checksum"], rows) + "\n\n" if rows else ""
    return (f"## Lineage\n\n{table}Earlier corpus versions deduplicated against: {len(versions)}; input files: "
            f"{n_files} (sha256 under Sources). `gptforge lineage <this folder>` prints the whole chain.")


def _license() -> str:
    return ("## License\n\nUnknown: each document keeps the copyright of its author or publisher. Check the terms of "
            "the sources before redistributing.")


# ---------------------------------------------------------------------------------------------------------------------
# The charts


