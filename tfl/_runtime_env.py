"""CPU runtime settings that TensorFlow reads once, when it is imported.

This module imports nothing from tfl or TensorFlow, so an entry point can apply the settings
before TensorFlow loads: `tfl/__init__.py` calls `apply()` first thing, which covers the
`tfl` command, the recipes and any script or notebook that imports tfl before TensorFlow.
Settings the user made win (`os.environ.setdefault`); after TensorFlow is imported nothing
can be applied and `apply()` says so.

- `TF_ENABLE_ONEDNN_OPTS=1` on x86 CPUs without AVX-512, where TensorFlow leaves oneDNN off
  (with AVX-512 it is on already). Measured on a 2-core AMD Zen 3 (issue 8): 1.25-2.2x
  inference, 1.06-1.5x training. oneDNN reorders floating-point sums, so results differ
  from the default kernels in the last bits.
- `TF_CPU_ALLOCATOR_USE_BFC=true`: the BFC allocator instead of malloc churn (1.15-1.7x).

Re-measure on your CPU with `benchmarks/runtime.py`; switch them off with
`TFL_CPU_RUNTIME=off` (or by setting the variables yourself).
"""

from __future__ import annotations

import os
import platform
import sys

OFF = "TFL_CPU_RUNTIME"


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`); empty where unreadable."""
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

    Example:
    >>> from tfl._runtime_env import recommended_env
    >>> recommended_env({"avx2", "fma"}, "x86_64")
    {'TF_CPU_ALLOCATOR_USE_BFC': 'true', 'TF_ENABLE_ONEDNN_OPTS': '1'}
    >>> recommended_env({"avx2", "avx512f"}, "x86_64")
    {'TF_CPU_ALLOCATOR_USE_BFC': 'true'}
    """
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    env = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
    if machine in ("x86_64", "amd64") and "avx512f" not in flags:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def apply(environ=None) -> dict[str, str]:
    """Sets the recommended variables that are unset; returns those it set.

    Does nothing (returns `{}`) when `TFL_CPU_RUNTIME=off` or once TensorFlow is imported
    (it reads them at import).
    """
    environ = os.environ if environ is None else environ
    if environ.get(OFF, "").lower() in ("0", "off", "false", "no"):
        return {}
    if "tensorflow" in sys.modules:
        return {}
    applied = {}
    for key, value in recommended_env().items():
        if key not in environ:
            environ[key] = value
            applied[key] = value
    return applied
