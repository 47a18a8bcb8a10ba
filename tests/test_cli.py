import pytest

from flows.app.cli import parse_params


def test_params_parse_as_json_like_prefect_deployment_run():
    assert parse_params(['dumps=["a.zst", "b.zst"]', "min_score=5", "allow_nsfw=true", "version=v1", "x=null"]) == {
        "dumps": ["a.zst", "b.zst"], "min_score": 5, "allow_nsfw": True, "version": "v1", "x": None}


def test_param_without_equals_is_a_clear_error():
    with pytest.raises(SystemExit, match="not key=value"):
        parse_params(["min_score"])
