"""Explainer configuration from TOML and the environment."""

from pathlib import Path

import pytest

from multishap.service.rpc.config import load_config, parse_targets_env


def test_example_config_loads():
    config = load_config(Path(__file__).resolve().parents[1] / "deploy" / "explainer.toml", environ={})
    assert config.targets["synthetic"].addresses == ("127.0.0.1:50051",)
    assert config.targets["synthetic"].max_in_flight == 4 and config.limits.max_budget == 200_000


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[limits]\nmax_budget = 10\n[targets.a]\naddresses = ["h:1"]\n')
    config = load_config(path, environ={"MULTISHAP_TARGETS": "b=h:2,h:3", "MULTISHAP_MAX_BUDGET": "99"})
    assert set(config.targets) == {"a", "b"} and config.targets["b"].addresses == ("h:2", "h:3")
    assert config.limits.max_budget == 99


@pytest.mark.parametrize(
    "text, message",
    [
        ('[targets.a]\naddresses = []\n', "non-empty list of addresses"),
        ('[targets.a]\naddresses = ["h:1"]\nspeed = 3\n', "unknown settings"),
        ('[limits]\nmax_budgt = 3\n', "unknown settings"),
        ('[target.a]\n', "unknown sections"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path, environ={})


def test_bad_environment_is_a_clear_error():
    with pytest.raises(ValueError, match="is not name=host:port"):
        parse_targets_env("nameonly")
    with pytest.raises(ValueError, match="must be a whole number"):
        load_config(None, environ={"MULTISHAP_MAX_BUDGET": "lots"})
