"""The project's set-up: dependencies declared once for pip and once for conda, and the CLI."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from cxrdrift import cli

ROOT = Path(__file__).resolve().parents[1]


def _normalized(requirement: str) -> tuple[str, str]:
    parsed = Requirement(requirement)
    return parsed.name.lower().replace("_", "-"), str(parsed.specifier)


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    listed = [line for line in pip_section if not line.startswith("-e")]
    assert sorted(map(_normalized, listed)) == sorted(map(_normalized, declared))
    python = next(item for item in environment["dependencies"] if isinstance(item, str)
                  and item.startswith("python="))
    assert python.split("=")[1] in {"3.10", "3.11", "3.12"}


@pytest.mark.parametrize("command", [[], ["data"], ["data", "synth"], ["data", "check"], ["run"],
                                     ["book"], ["config"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cxrdrift" in capsys.readouterr().out


def test_bad_parameter_is_a_message_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "cxrdrift", "config", "--profile", "demo",
                             "-p", "thresold", "0.4"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == cli.EXIT_BAD_INPUT
    assert "unknown parameter 'thresold'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_command_prints_the_resolved_profile(capsys):
    assert cli.main(["config", "--profile", "smoke", "-p", "threshold", "0.3"]) == 0
    out = capsys.readouterr().out
    assert '"profile": "smoke"' in out and '"threshold": 0.3' in out
