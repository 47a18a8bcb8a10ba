import great_expectations.expectations as gxe
import pandas as pd
import pytest

from data_contracts.corpus import blocked_host_regex
from data_contracts.gate import Check, GateFailed, run_gate


def test_passing_gate_reports_success():
    frame = pd.DataFrame({"doc_id": ["a", "b"]})
    report = run_gate("t", [Check("docs", frame, [gxe.ExpectColumnValuesToBeUnique(column="doc_id")])])
    assert report.success and report.evaluated == 1
    assert report.raise_for_failure() is report


def test_failing_gate_names_the_expectation_and_what_was_observed():
    frame = pd.DataFrame({"doc_id": ["a", "a", None]})
    report = run_gate("corpus", [Check("docs", frame, [gxe.ExpectColumnValuesToBeUnique(column="doc_id"),
                                                       gxe.ExpectColumnValuesToNotBeNull(column="doc_id"),
                                                       gxe.ExpectTableRowCountToEqual(value=3)])])
    assert not report.success
    assert [f.expectation for f in report.failures] == ["expect_column_values_to_be_unique",
                                                       "expect_column_values_to_not_be_null"]
    with pytest.raises(GateFailed) as err:
        report.raise_for_failure()
    message = str(err.value)
    assert "gate 'corpus' failed 2 of 3" in message
    assert "column='doc_id'" in message and "unexpected_count=" in message
    assert "| docs | expect_column_values_to_be_unique |" in report.markdown()


def test_blocked_host_regex_matches_subdomains_only_on_label_boundaries():
    import re

    rx = re.compile(blocked_host_regex(["wikipedia.org", "imgur.com"]))
    assert rx.match("en.wikipedia.org") and rx.match("wikipedia.org") and rx.match("i.imgur.com")
    assert not rx.match("notwikipedia.org") and not rx.match("wikipedia.org.example.com")
