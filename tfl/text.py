"""Old home of the text bases: now `tfl.backbones.text` (text data is `tfl.data.text`).

`tfl.text`, the attribute of the `tfl` package, is `tfl.backbones.text` itself and does not
warn. `import tfl.text` and `from tfl.text import ...` load this module, which warns once and
then puts `tfl.backbones.text` in its place, so every spelling names one module (patching
`tfl.text.load_bert_backbone` patches the function tfl calls).
"""

import sys

from tfl._deprecation import warn_moved

warn_moved(__name__, "tfl.backbones.text")

from tfl.backbones import text  # noqa: E402
from tfl.backbones.text import (  # noqa: E402, F401  (re-exported)
    MINILM,
    MINILM_INSTALL_HINT,
    MINILM_PACKAGE,
    MeanPooling,
    PresetDownloadError,
    bert_preprocessor,
    load_bert_backbone,
    load_bert_tokenizer,
    max_sequence_length,
    resolve_text_preset,
    sentence_embedding,
)

# The import system returns what sys.modules holds once this module has run.
sys.modules[__name__] = text
