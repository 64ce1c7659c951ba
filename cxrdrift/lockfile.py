"""The lock files `make lock` writes with uv (`requirements/cpu.lock`, `requirements/gpu.lock`):
read them and check them against pyproject.toml, an installed environment and environment.yml.

A lock pins every package at one version with the hashes of its files; its header is the uv
command that wrote it, which names the extras it covers and the Python it was resolved for.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCKS = ("requirements/cpu.lock", "requirements/gpu.lock")
# How uv's "# via" comments name a dependency that pyproject.toml declares itself.
DECLARED = "cxrdrift (pyproject.toml)"
# The Makefile pins pip itself (PIP_VERSION) before installing the lock; the lock does not list it.
NOT_LOCKED = frozenset({"pip"})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


class LockError(ValueError):
    """A lock file that is not what `make lock` writes; the message names the file and line."""


@dataclass(frozen=True)
class Pin:
    name: str                # canonical name (PEP 503)
    version: str
    hashes: int              # how many file hashes the lock gives
    via: frozenset[str]      # what requires it, as uv annotates


@dataclass(frozen=True)
class Lock:
    path: Path
    command: tuple[str, ...]   # the uv command of the header
    pins: dict[str, Pin]

    def _options(self, flag: str) -> list[str]:
        return [value for option, value in zip(self.command, self.command[1:]) if option == flag]

    @property
    def extras(self) -> list[str]:
        """The extras of pyproject.toml the lock covers (its `--extra` options)."""
        return self._options("--extra")

    @property
    def python(self) -> str:
        """The Python version the lock was resolved for (its `--python-version`)."""
        values = self._options("--python-version")
        if not values:
            raise LockError(f"{self.path}: its header names no --python-version")
        return values[0]


def read_lock(path: str | Path) -> Lock:
    """Parse a lock written by `uv pip compile --generate-hashes` (see `make lock`)."""
    path = Path(path)
    command: tuple[str, ...] = ()
    entries: list[dict] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not line[0].isspace():
            if stripped.startswith("#"):
                if stripped.lstrip("# ").startswith("uv pip compile"):
                    command = tuple(shlex.split(stripped.lstrip("# ")))
                continue
            match = _PIN.match(stripped)
            if not match:
                raise LockError(f"{path}:{number}: {stripped!r} is not a pinned requirement (name==version)")
            entries.append({"name": canonicalize_name(match[1]), "version": match[2], "hashes": 0, "via": set()})
        elif not entries:
            raise LockError(f"{path}:{number}: an indented line before the first requirement")
        elif stripped.startswith("--hash="):
            entries[-1]["hashes"] += 1
        elif stripped.startswith("#"):
            words = stripped.lstrip("#").strip()
            via = words.removeprefix("via").strip() if words.startswith("via") else words
            if via and not via.startswith("-"):
                entries[-1]["via"].add(via)
    if not command:
        raise LockError(f"{path}: no 'uv pip compile' header; write it with `make lock`")
    pins = {entry["name"]: Pin(entry["name"], entry["version"], entry["hashes"], frozenset(entry["via"]))
            for entry in entries}
    return Lock(path, command, pins)


def pyproject_mismatches(pyproject: str | Path, lock: Lock) -> list[str]:
    """Where the lock no longer follows pyproject.toml: a declared requirement it lacks or pins
    outside the declared range, a pin it keeps for a requirement no longer declared, a pin without
    a hash, an extra pyproject.toml does not have, a Python pyproject.toml does not support."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    name = lock.path.name
    problems = [f"{name} covers the extra {extra!r}, which pyproject.toml does not define"
                for extra in lock.extras if extra not in optional]
    if not SpecifierSet(project.get("requires-python", "")).contains(lock.python):
        problems.append(f"{name} is for Python {lock.python}, outside pyproject.toml's "
                        f"requires-python {project['requires-python']}")
    declared = [Requirement(text) for text in
                [*project["dependencies"], *(r for extra in lock.extras for r in optional.get(extra, []))]]
    names = {canonicalize_name(requirement.name) for requirement in declared}
    for requirement in declared:
        pin = lock.pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"pyproject.toml declares {requirement}, which {name} does not pin: run `make lock`")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{name} pins {pin.name}=={pin.version}, outside pyproject.toml's {requirement}: "
                            f"run `make lock`")
    for pin in lock.pins.values():
        if DECLARED in pin.via and pin.name not in names:
            problems.append(f"{name} pins {pin.name}=={pin.version} for pyproject.toml, which no longer "
                            f"declares it: run `make lock`")
        if pin.hashes == 0:
            problems.append(f"{name} gives no hash for {pin.name}=={pin.version}")
    return problems


def freeze_mismatches(freeze: Iterable[str], lock: Lock) -> list[str]:
    """Where an environment (the lines of `pip freeze --all --exclude-editable`) differs from the
    lock: a package at another version, one the lock lacks, one it locks that is not installed."""
    installed: dict[str, str] = {}
    problems = []
    for line in (line.strip() for line in freeze):
        if not line or line.startswith(("#", "-e")):
            continue
        package, separator, version = line.partition("==")
        if not separator:
            problems.append(f"{line!r} is installed from a file or URL, not at a locked version")
            continue
        installed[canonicalize_name(package)] = version
    for package in sorted((set(installed) | set(lock.pins)) - NOT_LOCKED):
        pin, version = lock.pins.get(package), installed.get(package)
        if pin is None:
            problems.append(f"{package}=={version} is installed but not in {lock.path.name}")
        elif version is None:
            problems.append(f"{package}=={pin.version} is in {lock.path.name} but not installed")
        elif Version(version) != Version(pin.version):
            problems.append(f"{package} is installed at {version}, {lock.path.name} pins {pin.version}")
    return problems


def environment_mismatches(environment_yml: str | Path, lock: Lock, lock_name: str) -> list[str]:
    """Where environment.yml differs from the lock: its Python must be the lock's (major.minor) and
    its pip section must install `-r <lock_name>` and nothing beside it."""
    import yaml

    dependencies = yaml.safe_load(Path(environment_yml).read_text()).get("dependencies") or []
    python = "python=" + ".".join(lock.python.split(".")[:2])
    pythons = [item for item in dependencies if isinstance(item, str) and re.match(r"python\b", item)]
    problems = [] if pythons == [python] else [f"environment.yml asks for {pythons or 'no python'}, "
                                               f"the lock is for {python}"]
    pip = [item["pip"] for item in dependencies if isinstance(item, dict) and "pip" in item]
    if pip != [[f"-r {lock_name}"]]:
        problems.append(f"environment.yml's pip section is {pip}, not exactly ['-r {lock_name}']")
    return problems


__all__ = ["LOCKS", "LockError", "Pin", "Lock", "read_lock", "pyproject_mismatches", "freeze_mismatches",
           "environment_mismatches"]
