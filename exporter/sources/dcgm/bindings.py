"""Finding and importing DCGM's Python bindings (pydcgm and friends), which are not on PyPI.

DCGM installs them beside itself; they import each other by top-level name (`import
dcgm_structs`), so their directory goes on sys.path. Where they are looked for, in order:

1. `$DCGM_BINDINGS_PATH` (one directory, or several separated by `:`), so an explicit setting
   wins over an installed DCGM;
2. `/usr/share/datacenter-gpu-manager-4/bindings/python3` (DCGM 4);
3. `/usr/local/dcgm/bindings/python3` (DCGM 3 and older);
4. wherever Python already finds `pydcgm` (PYTHONPATH).

Importing the bindings loads no native library: `libdcgm.so.4` is loaded when a handle is made.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ENV_VAR = "DCGM_BINDINGS_PATH"
INSTALL_PATHS: tuple[str, ...] = (
    "/usr/share/datacenter-gpu-manager-4/bindings/python3",
    "/usr/local/dcgm/bindings/python3",
)
MODULES = ("dcgm_structs", "dcgm_fields", "dcgm_agent", "pydcgm")

_lock = threading.Lock()


class BindingsNotFound(Exception):
    """DCGM's Python bindings are not installed where we look (the message says where)."""


@dataclass(frozen=True)
class Bindings:
    """The binding modules the DCGM source uses, and the directory they came from."""

    pydcgm: ModuleType
    dcgm_fields: ModuleType
    dcgm_structs: ModuleType
    dcgm_agent: ModuleType
    path: str  # "" when they came from sys.path as it was


def candidate_dirs(environ: dict[str, str] | None = None) -> list[str]:
    """Directories to look in, in order (see the module docstring)."""
    env = os.environ if environ is None else environ
    dirs = [d for d in env.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
    return [*dirs, *INSTALL_PATHS]


def load(environ: dict[str, str] | None = None) -> Bindings:
    """Import the bindings from the first candidate directory that has them.

    Raises BindingsNotFound naming the places looked in. Once imported, the modules stay in
    sys.modules: later calls return the same modules whatever the environment says.
    """
    with _lock:
        if "pydcgm" in sys.modules:
            return _imported(_origin(sys.modules["pydcgm"]))
        looked = candidate_dirs(environ)
        for directory in looked:
            if (Path(directory) / "pydcgm.py").is_file():
                if directory not in sys.path:
                    sys.path.insert(0, directory)
                return _imported(directory)
        try:
            return _imported("")
        except ImportError:
            pass
    raise BindingsNotFound(
        "DCGM's Python bindings (pydcgm) not found in "
        + ", ".join(looked)
        + f" or on the Python path: install DCGM, or set {ENV_VAR} to its bindings/python3"
    )


def import_error(environ: dict[str, str] | None = None) -> str | None:
    """None when the bindings import, else one line saying why not (for `--backend auto`)."""
    try:
        load(environ)
    except (BindingsNotFound, ImportError) as exc:
        return str(exc)
    return None


def _origin(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    return str(Path(file).parent) if file else ""


def _imported(directory: str) -> Bindings:
    mods = {name: importlib.import_module(name) for name in MODULES}
    return Bindings(path=directory, **mods)
