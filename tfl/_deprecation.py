"""Old names that moved: they keep working and say where the new home is.

A moved module leaves a small module behind that calls `warn_moved` and re-exports the new
one; a moved function or class is reached through the old module's `__getattr__`, made by
`moved_names`. Both warn with a `DeprecationWarning` that names the new import.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping


def warn_moved(old: str, new: str) -> None:
    """Warn that module `old` is now `new` (call it at the top of the old module).

    Example:
    >>> import warnings
    >>> from tfl._deprecation import warn_moved
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_moved("tfl.old", "tfl.new")
    >>> str(caught[0].message)
    'tfl.old is now tfl.new: import it from there (the old name will be removed).'
    """
    warnings.warn(
        f"{old} is now {new}: import it from there (the old name will be removed).",
        DeprecationWarning,
        stacklevel=3,
    )


def moved_names(
    module: str, moves: Mapping[str, str], stacklevel: int = 2
) -> Callable[[str], object]:
    """A module `__getattr__` for names that moved: `{old name: "new.module:new_name"}`.

    `stacklevel` 2 points the warning at the line that read the name; one more for each
    function between that line and this `__getattr__`.

    Example:
    >>> import warnings
    >>> from tfl._deprecation import moved_names
    >>> getattr_ = moved_names("tfl.old", {"dumps": "json:dumps"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("dumps")([1])
    '[1]'
    >>> str(caught[0].message)
    'tfl.old.dumps is now json.dumps: import it from there (the old name will be removed).'
    """

    def __getattr__(name: str) -> object:
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, new_name = moves[name].split(":")
        warnings.warn(
            f"{module}.{name} is now {target}.{new_name}: import it from there (the old name "
            "will be removed).",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(target), new_name)

    return __getattr__
