"""The gate runner: validate small tables with Great Expectations suites and report failures readably.

A gate takes named checks — a pandas DataFrame and the expectations it must meet — runs each in a fresh ephemeral
GX context (a shared one is not thread-safe), and returns a ``GateReport``. ``GateReport.raise_for_failure`` raises
``GateFailed`` whose message lists each failed expectation with the observed values, so a person reading a failed
flow run knows what is wrong without opening GX. Suites stay small: callers validate per-shard statistics or
metadata columns (no document text), since GX hashes whole frames.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass
class Check:
    """A table and the expectations it must meet."""

    name: str
    frame: pandas.DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation instances


@dataclass
class Failure:
    check: str
    expectation: str
    kwargs: dict
    observed: dict


@dataclass
class GateReport:
    gate: str
    evaluated: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        status = "passed" if self.success else "FAILED"
        lines = [f"# Gate `{self.gate}`: {status}", "",
                 f"{self.evaluated} expectations evaluated, {len(self.failures)} failed.", ""]
        if self.failures:
            lines += ["| check | expectation | arguments | observed |", "|---|---|---|---|"]
            for f in self.failures:
                args = ", ".join(f"{k}={v!r}" for k, v in f.kwargs.items())
                seen = ", ".join(f"{k}={v!r}" for k, v in f.observed.items())
                lines.append(f"| {f.check} | {f.expectation} | {args} | {seen} |")
        return "\n".join(lines) + "\n"

    def raise_for_failure(self) -> "GateReport":
        if not self.success:
            raise GateFailed(self)
        return self


class GateFailed(RuntimeError):
    """A stage's output broke its data contract; downstream stages must not start."""

    def __init__(self, report: GateReport):
        self.report = report
        details = "; ".join(
            f"{f.check}: {f.expectation}({', '.join(f'{k}={v!r}' for k, v in f.kwargs.items())}) observed "
            f"{', '.join(f'{k}={v!r}' for k, v in f.observed.items())}" for f in report.failures)
        super().__init__(f"gate {report.gate!r} failed {len(report.failures)} of {report.evaluated} expectations: "
                         f"{details}. The output was not published; fix the input or parameters and rerun.")


class LazyModule:
    """A module imported on first attribute access. Great Expectations costs about 250 MB and 3 s to import, pandas
    about 50 MB: a stage's process (training most of all) should not carry them until its gate runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(import_module(self.name), attribute)


expectations = LazyModule("great_expectations.expectations")
"""Use as ``from data_contracts.gate import expectations as gxe``; ``gxe.ExpectColumnValuesToBeInSet(…)``."""
pandas = LazyModule("pandas")
"""Use as ``from data_contracts.gate import pandas as pd``."""


_OBSERVED_KEYS = ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")


def run_gate(gate: str, checks: list[Check]) -> GateReport:
    """Validate every check; never raises for failed expectations (call ``raise_for_failure``)."""
    import great_expectations as gx

    for name in ["great_expectations", *[n for n in logging.root.manager.loggerDict if n.startswith("great_expectations.")]]:
        logging.getLogger(name).setLevel(logging.WARNING)
    report = GateReport(gate)
    for check in checks:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        batch = (context.data_sources.add_pandas(f"{gate}-source")
                 .add_dataframe_asset(check.name)
                 .add_batch_definition_whole_dataframe("all")
                 .get_batch(batch_parameters={"dataframe": check.frame}))
        suite = gx.ExpectationSuite(name=f"{gate}.{check.name}")
        for expectation in check.expectations:
            suite.add_expectation(expectation)
        result = batch.validate(suite)
        for r in result.results:
            report.evaluated += 1
            if not r.success:
                kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
                observed = {k: _plain(r.result[k]) for k in _OBSERVED_KEYS if k in r.result}
                if r.exception_info and r.exception_info.get("raised_exception"):
                    observed["exception"] = r.exception_info.get("exception_message")
                report.failures.append(Failure(check.name, r.expectation_config.type, kwargs, observed))
    return report


def _plain(value: Any) -> Any:
    """Observed values as short plain Python (lists trimmed) for messages and artifacts."""
    if isinstance(value, list):
        return [_plain(v) for v in value[:5]]
    if hasattr(value, "item"):
        return value.item()
    return value
