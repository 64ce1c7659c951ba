"""The project's command line (the dependencies, the lock and environment.yml: tests/test_lock.py)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxrdrift import cli

ROOT = Path(__file__).resolve().parents[1]


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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrdrift", *args], capture_output=True, text=True, cwd=ROOT)


def test_synth_then_check_succeeds_and_a_broken_dataset_is_named(tmp_path):
    out = tmp_path / "cxr"
    made = _cli("data", "synth", str(out), "--train", "15", "--val", "6", "--test", "10", "--size", "64")
    assert made.returncode == 0, made.stderr
    checked = _cli("data", "check", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Tuberculosis" in checked.stdout

    victim = next((out / "test" / "Pneumonia").glob("*.png"))
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (out / "train" / "Emphysema").mkdir()
    (out / "train" / "Emphysema" / "x.png").write_bytes(victim.read_bytes())
    shutil.rmtree(out / "val")
    broken = _cli("data", "check", str(out))
    assert broken.returncode == 1
    report = broken.stdout + broken.stderr
    assert "Traceback" not in report
    assert victim.name in report and "Emphysema" in report and "val" in report


def test_missing_dataset_root_is_a_message(tmp_path):
    result = _cli("run", "--profile", "paper", "--data-dir", str(tmp_path / "nowhere"),
                  "-p", "run_dir", str(tmp_path / "run"))
    assert result.returncode in (1, cli.EXIT_BAD_INPUT)
    assert "Traceback" not in result.stderr and "nowhere" in result.stderr
