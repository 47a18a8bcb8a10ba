"""The compare flow: a tiny init × seed grid of finetune child runs → compare/<v> with means, SEs and paired diffs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flows.store import DataRoot
from tests.builders import TINY_TRAIN, publish_tokens, sentiment


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_mean_and_se_use_the_sample_std():
    from flows.compare import mean_and_se

    mean, se = mean_and_se([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2 / 3))


def test_a_tiny_grid_reports_cells_and_paired_differences_recomputed_from_the_child_runs(tmp_path_factory,
                                                                                        prefect_harness):
    from flows.compare import compare, mean_and_se
    from flows.pretrain import pretrain

    root = publish_tokens(DataRoot.from_env(str(tmp_path_factory.mktemp("data"))))
    pretrain(version="p1", data_root=root.url, preset="tiny", train=TINY_TRAIN)
    folder = tmp_path_factory.mktemp("task")
    train = sentiment(32, seed=1)
    seen = {e.text for e in train}
    test = [e for e in sentiment(24, seed=2) if e.text not in seen]
    files = {name: write_jsonl(folder / f"{name}.jsonl", [{"text": e.text, "label": e.label} for e in examples])
             for name, examples in (("train", train), ("test", test))}

    out = Path(compare(task="classification", train=files["train"], test=files["test"], seeds=[0, 1], lrs=[1e-3],
                       finetune_config={"epochs": 1, "batch_size": 8}, version="c1", data_root=root.url))
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "accuracy" and len(results["runs"]) == 4
    # one child run per cell, named after the compare version so that a rerun reuses them
    assert [c["run"] for c in results["runs"]] == [f"c1-cell{i:03d}" for i in range(4)]
    assert (out / "report.md").read_text().count("pretrained beats random") <= 1
    svg = (out / "compare.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") >= 2
    assert svg.count("<path") == sum(c["se"] > 0 for c in results["cells"]), "one error bar per cell with an SE"
    manifest = json.loads((out / "manifest.json").read_text())
    ups = [(u["stage"], u["version"]) for u in manifest["upstream"]]
    assert ups[0] == ("runs", "p1") and len(ups) == 5

    # Recompute from each child run's own manifest.
    values = {}
    for child in results["runs"]:
        child_manifest = root.read_manifest("runs", child["run"])
        assert child_manifest["upstream"][0]["version"] == "p1"
        assert child_manifest["parameters"]["finetune"]["init"] == child["init"]
        values[(child["init"], child["seed"])] = child_manifest["counts"]["test_accuracy"]
    for cell in results["cells"]:
        mean, se = mean_and_se([values[(cell["init"], s)] for s in (0, 1)])
        assert (cell["mean"], cell["se"]) == (pytest.approx(mean), pytest.approx(se))
    (paired,) = results["paired"]
    mean, se = mean_and_se([values[("pretrained", s)] - values[("random", s)] for s in (0, 1)])
    assert (paired["mean_diff"], paired["se"], paired["n"]) == (pytest.approx(mean), pytest.approx(se), 2)


def test_an_empty_grid_is_refused_before_anything_is_written(tmp_path):
    from flows.compare import compare

    with pytest.raises(ValueError, match=r"grid is empty .*seeds=\[\]\); give at least one value of each"):
        compare.fn(task="classification", train="a.jsonl", test="b.jsonl", seeds=[], data_root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_gate_refuses_a_grid_with_a_missing_cell_or_a_paired_row_over_unshared_seeds():
    from data_contracts.compare import validate_comparison
    from flows.compare import summarise

    grid = [(init, 0.5, 1e-3, seed) for init in ("pretrained", "random") for seed in (0, 1)]
    scores = {cell: 0.5 + 0.1 * i for i, cell in enumerate(grid)}
    runs = [{"init": i, "aux_lm_weight": lam, "lr": lr, "seed": s, "run": f"c-cell{k:03d}", "value": scores[(i, lam, lr, s)]}
            for k, (i, lam, lr, s) in enumerate(grid)]
    assert validate_comparison({"runs": runs, **summarise(scores)}, grid).success

    missing = {cell: v for cell, v in scores.items() if cell != grid[-1]}
    report = validate_comparison({"runs": runs[:-1], **summarise(missing)}, grid)
    assert not report.success and "every_cell_ran_once" in report.markdown()

    tampered = summarise(scores)
    tampered["paired"][0]["n"] = 5
    report = validate_comparison({"runs": runs, **tampered}, grid)
    assert not report.success and "paired_over_shared_seeds" in report.markdown()
