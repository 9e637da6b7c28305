"""CPU runtime settings that TensorFlow reads once, when it is imported.

This module imports nothing from tfl or TensorFlow. Importing it as `tfl._runtime_env` runs
`tfl/__init__.py` first (Python imports a package before its modules), so the package calls
`apply(warn=False)` as the first thing in `tfl/__init__.py`, before any TensorFlow import:
that covers the `tfl` command (its console script imports `tfl.cli`, hence `tfl` first), the
recipes and any script or notebook that imports tfl before TensorFlow. A process that
imported TensorFlow first keeps TensorFlow's defaults; `apply()` then warns with the
variables it could not set. Settings the user made win (`os.environ.setdefault`).

- `TF_ENABLE_ONEDNN_OPTS=1` on x86 CPUs without AVX-512, where TensorFlow leaves oneDNN off
  (with AVX-512 it is on already). Measured with `benchmarks/runtime.py` on a 2-core AMD Zen 3: 1.25-2.2x
  inference, 1.06-1.5x training. On the 2-core AVX-512 AMD EPYC of
  `benchmarks/results/runtime.json` (oneDNN on by default) turning it off gave 0.42-0.68x,
  so it matters. oneDNN reorders floating-point sums: results differ from the default
  kernels in the last bits.
- `TF_CPU_ALLOCATOR_USE_BFC=true` (the BFC allocator instead of malloc churn) on the same
  CPUs: 1.15-1.7x on that Zen 3. On the AVX-512 EPYC three runs gave 0.91-1.14x (noise),
  so there tfl leaves TensorFlow's defaults alone.
- Other CPUs (ARM, ...): nothing, not measured.

Re-measure on your CPU with `python benchmarks/runtime.py`; switch them off with
`TFL_CPU_RUNTIME=off` (or by setting the variables yourself). In a notebook, import tfl
before TensorFlow (or set the variables in the first cell) to get them.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from collections.abc import MutableMapping

OFF = "TFL_CPU_RUNTIME"
_OFF_VALUES = ("0", "off", "false", "no")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`); empty where unreadable.

    Example:
    >>> from tfl._runtime_env import cpu_flags
    >>> cpu_flags("/no/such/file")
    set()
    """
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def recommended_env(flags: set[str] | None = None, machine: str | None = None) -> dict[str, str]:
    """The environment variables tfl recommends for this CPU (see the module docstring).

    Args:
        flags: the CPU's feature flags; default: `cpu_flags()` of this machine.
        machine: `platform.machine()` of the CPU; default: this machine's.

    Example:
    >>> from tfl._runtime_env import recommended_env
    >>> recommended_env({"avx2", "fma"}, "x86_64")
    {'TF_CPU_ALLOCATOR_USE_BFC': 'true', 'TF_ENABLE_ONEDNN_OPTS': '1'}
    >>> recommended_env({"avx2", "avx512f"}, "x86_64")  # TensorFlow's defaults are right
    {}
    """
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64") and "avx512f" not in flags:
        return {"TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_ENABLE_ONEDNN_OPTS": "1"}
    return {}


def apply(environ: MutableMapping[str, str] | None = None, warn: bool = True) -> dict[str, str]:
    """Sets the recommended variables that are unset; returns those it set.

    Call it before TensorFlow is imported (TensorFlow reads them at import). Does nothing
    and returns `{}` when `TFL_CPU_RUNTIME=off`, and also once TensorFlow is imported:
    then, with `warn`, a `RuntimeWarning` names the variables that could not take effect.

    Args:
        environ: the environment to change; default `os.environ`.
        warn: warn when TensorFlow was imported first.

    Example:
    >>> from tfl._runtime_env import apply
    >>> apply({"TFL_CPU_RUNTIME": "off"})
    {}
    """
    environ = os.environ if environ is None else environ
    if environ.get(OFF, "").lower() in _OFF_VALUES:
        return {}
    missing = {k: v for k, v in recommended_env().items() if k not in environ}
    if "tensorflow" in sys.modules:
        if warn and missing:
            settings = " ".join(f"{k}={v}" for k, v in missing.items())
            warnings.warn(
                f"TensorFlow was imported before tfl could set {settings} (read once, at "
                "import). Set them before importing TensorFlow, or import tfl first; "
                f"{OFF}=off silences this.",
                RuntimeWarning,
                stacklevel=2,
            )
        return {}
    for key, value in missing.items():
        environ[key] = value
    return missing
