"""The lock: it follows pyproject.toml, the venv `make setup` made holds exactly it, environment.yml
installs it; and the checks fail on a tampered copy."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxrdrift import lockfile

ROOT = Path(__file__).resolve().parents[1]
CPU, GPU = lockfile.LOCKS


@pytest.mark.parametrize("name", lockfile.LOCKS)
def test_each_lock_follows_pyproject(name):
    lock = lockfile.read_lock(ROOT / name)
    assert lockfile.pyproject_mismatches(ROOT / "pyproject.toml", lock) == []
    assert lock.python == "3.11.5"
    assert all(pin.hashes >= 1 for pin in lock.pins.values())


def test_the_gpu_lock_adds_cuda_tensorflow_at_the_cpu_locks_versions():
    cpu, gpu = lockfile.read_lock(ROOT / CPU), lockfile.read_lock(ROOT / GPU)
    assert cpu.extras == ["dev"] and gpu.extras == ["gpu", "dev"]
    added = set(gpu.pins) - set(cpu.pins)
    assert "tensorflow" in added and "nvidia-cudnn-cu12" in added and set(cpu.pins) <= set(gpu.pins)
    assert not any(name.startswith("nvidia-") for name in cpu.pins)
    assert gpu.pins["tensorflow"].version == cpu.pins["tensorflow-cpu"].version
    shared = set(cpu.pins) & set(gpu.pins)
    assert {name for name in shared if cpu.pins[name].version != gpu.pins[name].version} == set()


def _tampered(tmp_path: Path, pyproject_edit=None, lock_edit=None) -> tuple[Path, lockfile.Lock]:
    """Copies of pyproject.toml and the CPU lock, one of them edited (the edit must change it)."""
    pyproject, lock = tmp_path / "pyproject.toml", tmp_path / "cpu.lock"
    for source, target, edit in ((ROOT / "pyproject.toml", pyproject, pyproject_edit), (ROOT / CPU, lock, lock_edit)):
        text = source.read_text()
        edited = edit(text) if edit else text
        assert (edited != text) == bool(edit), f"the edit of {source.name} changed nothing"
        target.write_text(edited)
    return pyproject, lockfile.read_lock(lock)


def _new_problems(pyproject: Path, lock: lockfile.Lock) -> list[str]:
    """The problems of a tampered pair that the repository's own pair does not have (those are
    test_each_lock_follows_pyproject's)."""
    known = set(lockfile.pyproject_mismatches(ROOT / "pyproject.toml", lockfile.read_lock(ROOT / CPU)))
    return [problem for problem in lockfile.pyproject_mismatches(pyproject, lock) if problem not in known]


def test_a_mismatch_between_pyproject_and_the_lock_fails_the_check(tmp_path):
    version = lockfile.read_lock(ROOT / CPU).pins["keras"].version
    moved = _tampered(tmp_path, pyproject_edit=lambda t: t.replace('"keras>=3.3,<4"', '"keras>=4"'))
    assert _new_problems(*moved) == [
        f"cpu.lock pins keras=={version}, outside pyproject.toml's keras>=4: run `make lock`"]
    added = _tampered(tmp_path, pyproject_edit=lambda t: t.replace('"tqdm>=4.66",', '"tqdm>=4.66",\n    "pynrrd>=1.0",'))
    assert _new_problems(*added) == [
        "pyproject.toml declares pynrrd>=1.0, which cpu.lock does not pin: run `make lock`"]
    seaborn = lockfile.read_lock(ROOT / CPU).pins["seaborn"].version
    dropped = _tampered(tmp_path, pyproject_edit=lambda t: t.replace('    "seaborn>=0.13",\n', ""))
    assert _new_problems(*dropped) == [
        f"cpu.lock pins seaborn=={seaborn} for pyproject.toml, which no longer declares it: run `make lock`"]


def test_a_pin_without_hashes_or_a_line_that_is_no_pin_fails(tmp_path):
    def strip_six_hashes(text: str) -> str:
        return re.sub(r"(six==[^ ]+) \\\n(    --hash=[^\n]*\n)+", r"\1\n", text)

    pyproject, lock = _tampered(tmp_path, lock_edit=strip_six_hashes)
    assert _new_problems(pyproject, lock) == [
        f"cpu.lock gives no hash for six=={lock.pins['six'].version}"]
    (tmp_path / "bad.lock").write_text((ROOT / CPU).read_text() + "numpy>=1.26\n")
    with pytest.raises(lockfile.LockError, match=r"bad.lock:\d+: 'numpy>=1.26' is not a pinned requirement"):
        lockfile.read_lock(tmp_path / "bad.lock")


def test_freeze_check_names_every_difference():
    lock = lockfile.read_lock(ROOT / CPU)
    freeze = [f"{pin.name}=={pin.version}" for pin in lock.pins.values()]
    assert lockfile.freeze_mismatches(["pip==26.3", "-e /src/cxrdrift", *freeze], lock) == []
    numpy, pandas = lock.pins["numpy"].version, lock.pins["pandas"].version
    tampered = [line for line in freeze if not line.startswith("pandas==")]
    tampered = [("numpy==1.26.4" if line.startswith("numpy==") else line) for line in tampered]
    tampered += ["pynrrd==1.1.3", "Pillow_Extra @ file:///tmp/pillow_extra.whl"]
    assert lockfile.freeze_mismatches(tampered, lock) == [
        "'Pillow_Extra @ file:///tmp/pillow_extra.whl' is installed from a file or URL, not at a locked version",
        f"numpy is installed at 1.26.4, cpu.lock pins {numpy}",
        f"pandas=={pandas} is in cpu.lock but not installed",
        "pynrrd==1.1.3 is installed but not in cpu.lock",
    ]


def _installed_lock() -> str:
    """The lock `make setup` installed this venv from (its stamp names it), or skip."""
    stamp = Path(sys.prefix) / ".installed"
    name = stamp.read_text().strip() if stamp.is_file() else ""
    if name not in lockfile.LOCKS:
        pytest.skip(f"{sys.prefix} was not installed from a lock by `make setup`")
    return name


def test_the_venv_holds_exactly_the_locked_versions():
    lock = lockfile.read_lock(ROOT / _installed_lock())
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert lockfile.freeze_mismatches(freeze, lock) == []


def test_environment_yml_installs_the_cpu_lock(tmp_path):
    lock = lockfile.read_lock(ROOT / CPU)
    assert lockfile.environment_mismatches(ROOT / "environment.yml", lock, CPU) == []
    tampered = tmp_path / "environment.yml"
    text = (ROOT / "environment.yml").read_text()
    tampered.write_text(text.replace("python=3.11", "python=3.12").replace(
        f'"-r {CPU}"', f'"-r {CPU}"\n      - "numpy>=1.26"'))
    assert lockfile.environment_mismatches(tampered, lock, CPU) == [
        "environment.yml asks for ['python=3.12'], the lock is for python=3.11",
        f"environment.yml's pip section is [['-r {CPU}', 'numpy>=1.26']], not exactly ['-r {CPU}']"]


def test_makefile_installs_the_lock_with_hashes_for_the_locks_python():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK \?= requirements/cpu\.lock$", makefile, re.M)
    assert "pip install --quiet --require-hashes -r $(LOCK)" in makefile
    assert "--python-version 3.11.5" in makefile and "sys.version_info >= (3, 11, 5)" in makefile
