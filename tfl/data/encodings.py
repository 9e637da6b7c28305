"""Text file encodings: which codec reads a file, and which of its bytes it cannot read.

- `check_encoding`: `"auto"` or a Python codec name (checked with `codecs.lookup`).
- `detect_encoding`: what `"auto"` reads a file as: UTF-8 with or without a byte-order mark
  (and UTF-16 / UTF-32 when their byte-order mark says so). Nothing else is guessed: a
  Latin-1 or cp1252 file is not told apart from a UTF-8 one with a broken byte by looking,
  so such a file stops with an error that names the row and byte, and the encoding to set.
- `read_text`: a whole file decoded; bytes the codec cannot read are kept as marked
  characters (`has_undecodable`), so the row readers can skip the rows that hold them
  (`ENCODING_ERRORS`: "skip") or stop at the first one ("stop") with `UndecodableText`.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import re

AUTO = "auto"
ENCODING_ERRORS = ("stop", "skip")

# Undecodable bytes become U+DC00 + byte (lone surrogates, which no valid text decodes to).
_HANDLER = "tfl.undecodable"
_MARKED = re.compile("[\udc00-\udcff]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _mark(error: UnicodeDecodeError) -> tuple[str, int]:
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(_HANDLER, _mark)


class UndecodableText(ValueError):
    """A row of a text file holds bytes its encoding cannot read.

    Attributes:
        path: the file.
        where: the row, as bad-input reports name it (`"<path> row N"`).
        byte: the offset of the file's first undecodable byte.
        encoding: the codec that could not read it.
    """

    def __init__(self, path: str, where: str, byte: int, encoding: str):
        self.path, self.where, self.byte, self.encoding = path, where, byte, encoding
        super().__init__(
            f"{where} is not {encoding} text (the file's first undecodable byte is at offset "
            f"{byte}). Pass the file's encoding (e.g. encoding='latin-1' or 'cp1252'; 'auto' "
            "reads UTF-8 with or without a byte-order mark), or encoding_errors='skip' to "
            "leave such rows out (they are listed in bad_inputs.txt)."
        )


def check_encoding(encoding: str) -> str:
    """`encoding` if it is `"auto"` or a codec Python knows; ValueError otherwise.

    Example:
    >>> from tfl.data.encodings import check_encoding
    >>> check_encoding("Latin-1"), check_encoding("auto")
    ('Latin-1', 'auto')
    >>> check_encoding("utf-9")
    Traceback (most recent call last):
    ...
    ValueError: Received encoding='utf-9'; expected 'auto' or a Python codec name such as 'utf-8', 'latin-1' or 'cp1252'.
    """
    if encoding == AUTO:
        return encoding
    try:  # an unknown codec, or a bytes-to-bytes one (base64), raises LookupError
        if not isinstance(encoding, str):
            raise LookupError(encoding)
        codecs.lookup(encoding)
        "".encode(encoding)
    except LookupError:
        raise ValueError(
            f"Received encoding={encoding!r}; expected 'auto' or a Python codec name such as "
            "'utf-8', 'latin-1' or 'cp1252'."
        ) from None
    return encoding


def check_encoding_errors(errors: str) -> str:
    """`errors` if it is one of `ENCODING_ERRORS`; ValueError otherwise."""
    if errors not in ENCODING_ERRORS:
        raise ValueError(
            f"Received encoding_errors={errors!r}; expected 'stop' (the first undecodable row "
            "stops with an error) or 'skip' (such rows are left out and reported)."
        )
    return errors


def detect_encoding(head: bytes) -> str:
    """The codec `"auto"` reads a file that starts with `head` as.

    Example:
    >>> import codecs
    >>> from tfl.data.encodings import detect_encoding
    >>> detect_encoding(codecs.BOM_UTF8 + b"text,label"), detect_encoding(b"text,label")
    ('utf-8-sig', 'utf-8')
    >>> detect_encoding(codecs.BOM_UTF16_LE + "t".encode("utf-16-le"))
    'utf-16'
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    return "utf-8"


@dataclasses.dataclass
class DecodedText:
    """A file's text, with its undecodable bytes marked (see `has_undecodable`).

    Attributes:
        path: the file.
        text: its text.
        encoding: the codec that read it (what `"auto"` chose).
        first_bad_byte: the offset of the first undecodable byte, or None.
    """

    path: str
    text: str
    encoding: str
    first_bad_byte: int | None = None

    def error(self, where: str) -> UndecodableText:
        """The error for the row `where`, which holds undecodable bytes."""
        return UndecodableText(self.path, where, self.first_bad_byte or 0, self.encoding)


def read_text(path: str, encoding: str = AUTO) -> DecodedText:
    """The whole text of `path` read with `encoding` (`"auto"`: see `detect_encoding`).

    Example:
    >>> import os, tempfile
    >>> from tfl.data.encodings import has_undecodable, read_text
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "wb").write(b"text\\ncaf\\xe9\\nok\\n")  # one Latin-1 byte
    >>> decoded = read_text(path)
    >>> decoded.encoding, decoded.first_bad_byte, has_undecodable(decoded.text.split()[1])
    ('utf-8', 8, True)
    >>> read_text(path, "latin-1").text.split()[1]
    'café'
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}. Pass the path of an existing file.")
    with open(path, "rb") as f:
        raw = f.read()
    codec = detect_encoding(raw[:4]) if encoding == AUTO else encoding
    text = raw.decode(codec, errors=_HANDLER)
    first = None
    if has_undecodable(text):
        try:
            raw.decode(codec)
        except UnicodeDecodeError as error:
            first = error.start
    return DecodedText(path, text, codec, first)


def has_undecodable(text: str) -> bool:
    """Whether `text` (from `read_text`) holds bytes its codec could not read."""
    return _MARKED.search(text) is not None
