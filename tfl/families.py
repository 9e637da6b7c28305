"""Old home of the image family table: now `tfl.backbones` (kept for old imports; it warns).

The classes are in `tfl.backbones.spec` and `tfl.backbones.preprocessing`, the table in
`tfl.backbones.family_table`, the registry in `tfl.backbones.families`, building in
`tfl.backbones.build` and block groups in `tfl.backbones.layer_groups`; `tfl.backbones`
re-exports them all.
"""

from tfl._deprecation import warn_moved

warn_moved(__name__, "tfl.backbones")

from tfl.backbones.build import (  # noqa: E402
    DOWNLOAD_TIMEOUT_S,
    build_application,
    check_input_size,
)
from tfl.backbones.families import (  # noqa: E402
    get_family,
    get_spec,
    list_backbones,
    list_families,
    register_family,
)
from tfl.backbones.family_table import FAMILIES  # noqa: E402
from tfl.backbones.layer_groups import group_layers, stable_layer_names  # noqa: E402
from tfl.backbones.preprocessing import (  # noqa: E402
    CAFFE_MEAN_BGR,
    PREPROCESSING_MODES,
    TORCH_MEAN,
    TORCH_STD,
    ImagePreprocessing,
)
from tfl.backbones.spec import Family, Variant  # noqa: E402

__all__ = [
    "CAFFE_MEAN_BGR",
    "DOWNLOAD_TIMEOUT_S",
    "FAMILIES",
    "PREPROCESSING_MODES",
    "TORCH_MEAN",
    "TORCH_STD",
    "Family",
    "ImagePreprocessing",
    "Variant",
    "build_application",
    "check_input_size",
    "get_family",
    "get_spec",
    "group_layers",
    "list_backbones",
    "list_families",
    "register_family",
    "stable_layer_names",
]
