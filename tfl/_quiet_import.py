"""Import TensorFlow without its start-up lines on the console.

Importing TensorFlow 2.21 prints, to the process's stderr (file descriptor 2):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    I0000 00:00:... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    E0000 00:00:... cuda_platform.cc:52] failed call to cuInit: ... (when devices are listed)

twice: the first three lines come from static initialisers in C++ that run when a shared
library is loaded, before absl logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` (read by
TensorFlow's own logging, later) cannot hide them; and `import tensorflow` loads two libraries
that each carry those initialisers (`_pywrap_tensorflow_internal.so`, then the profiler's
when `tensorflow.python.profiler.profiler_client` is imported).

Python's `logging` or `warnings` cannot reach C++ writes to file descriptor 2, so
`import_tensorflow()` points descriptor 2 at a temporary file while TensorFlow is imported,
then puts it back and re-prints every line that is not known start-up noise (so a real
error at import stays visible). It also sets `TF_CPP_MIN_LOG_LEVEL=2` (errors only) unless
it is set, which silences TensorFlow's later informational and warning lines (e.g.
"Local rendezvous is aborting ... End of sequence" at the end of each tf.data epoch).

`TFL_TF_LOGS=1` in the environment turns all of this off: TensorFlow then prints as it
always does. This module imports nothing from tfl, and nothing at all when TensorFlow is
already imported.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import MutableMapping

SHOW_LOGS = "TFL_TF_LOGS"
_ON_VALUES = ("1", "on", "true", "yes")

# What TensorFlow prints while it is imported and nobody needs to read.
_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "),  # absl INFO and WARNING lines
    re.compile(r"^E\d{4} .*Unable to register cu(DNN|FFT|BLAS) factory"),  # GPU builds
    re.compile(r"^E\d{4} .*failed call to cuInit"),  # CUDA build, no GPU
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
)


def shows_logs(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the user asked for TensorFlow's own logs (`TFL_TF_LOGS=1`).

    Example:
    >>> from tfl._quiet_import import shows_logs
    >>> shows_logs({"TFL_TF_LOGS": "1"}), shows_logs({})
    (True, False)
    """
    environ = os.environ if environ is None else environ
    return environ.get(SHOW_LOGS, "").strip().lower() in _ON_VALUES


def is_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's start-up lines.

    Example:
    >>> from tfl._quiet_import import is_noise
    >>> is_noise("I0000 00:00:1796274082.349105     831 cudart_stub.cc:31] Could not find cuda")
    True
    >>> is_noise("ImportError: libcudart.so.12: cannot open shared object file")
    False
    """
    return any(pattern.match(line) for pattern in _NOISE)


def import_tensorflow(environ: MutableMapping[str, str] | None = None) -> bool:
    """Imports TensorFlow with its start-up lines held back; returns whether it did.

    Does nothing (returns False) when TensorFlow is already imported or `TFL_TF_LOGS=1`.
    Lines that are not start-up noise are written to stderr after the import, also when
    the import fails.

    Example:
    >>> from tfl._quiet_import import import_tensorflow
    >>> import_tensorflow()  # tfl has imported TensorFlow already
    False
    """
    environ = os.environ if environ is None else environ
    if "tensorflow" in sys.modules or shows_logs(environ):
        return False
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real descriptor 2 (embedded Python)
        import tensorflow  # noqa: F401

        return True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            # Finding the devices loads the CUDA stub, which logs "failed call to cuInit" on
            # machines without a GPU: held back too (the run prints the device it uses).
            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            _replay(capture.read().decode("utf-8", errors="replace"))
    return True


def _replay(text: str) -> None:
    kept = [line for line in text.splitlines() if line.strip() and not is_noise(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()
