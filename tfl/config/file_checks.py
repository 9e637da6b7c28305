"""Checks of the text files `data.path` names, made before any work: columns and encoding.

What a CSV / JSONL file holds that a run needs can be known without loading it: the header
row (CSV) or the keys of its first objects (JSONL) say whether `data.text_column` and
`data.label_column` are there, and decoding the file says whether `data.encoding` reads every
row. Validation refuses a run whose files fail either, naming the key to change, before any
run directory is made. The reading itself is the data layer's (`tfl.data.text_files`,
`tfl.data.encodings`), which the loaders use too.
"""

from __future__ import annotations

from collections.abc import Mapping

from tfl.config.schema import ConfigError
from tfl.config.values import check_choice, check_string, did_you_mean, listing
from tfl.data.encodings import AUTO, ENCODING_ERRORS, check_encoding
from tfl.data.text_files import first_undecodable, jsonl_keys, read_csv_header

TEXT_FILE_SOURCES = ("csv", "jsonl")


def check_encoding_settings(encoding, errors, source: str) -> dict:
    """`data.encoding` ("auto" or a codec Python knows) and `data.encoding_errors`."""
    encoding = check_string("data.encoding", encoding)
    try:
        check_encoding(encoding)
    except ValueError:
        raise ConfigError(
            "data.encoding",
            f"received {encoding!r}, which is not a text codec Python knows",
            "Use auto (UTF-8, with or without a byte-order mark) or a codec name such as "
            "latin-1, cp1252 or utf-16.",
        ) from None
    errors = check_choice("data.encoding_errors", errors, ENCODING_ERRORS)
    if source not in TEXT_FILE_SOURCES and (encoding != AUTO or errors != "stop"):
        key = "data.encoding" if encoding != AUTO else "data.encoding_errors"
        raise ConfigError(
            key,
            f"data.source {source} reads no CSV or JSONL file, so {key} has nothing to read",
            "Remove it (data.encoding: auto, data.encoding_errors: stop).",
        )
    return {"encoding": encoding, "encoding_errors": errors}


def check_text_files(data) -> None:
    """The columns (keys) and the encoding of each CSV / JSONL file of the `data:` section."""
    if data.source not in TEXT_FILE_SOURCES:
        return
    paths = data.path.values() if isinstance(data.path, Mapping) else [data.path]
    columns = [data.text_column] if isinstance(data.text_column, str) else data.text_column
    wanted = {"data.text_column": list(columns), "data.label_column": [data.label_column]}
    for path in paths:
        if data.source == "csv":
            _check_csv_columns(path, wanted, data.encoding)
        else:
            _check_jsonl_keys(path, wanted, data.encoding)
        if data.encoding_errors == "stop":
            _check_decodes(path, data.encoding, jsonl=data.source == "jsonl")


def _check_csv_columns(path: str, wanted: dict, encoding: str) -> None:
    try:
        header = read_csv_header(path, encoding=encoding)
    except ValueError as error:  # an empty file
        raise ConfigError("data.path", str(error).rstrip("."), "Pass a file with rows.") from None
    for key, names in wanted.items():
        for name in names:
            if name not in header:
                raise ConfigError(
                    key,
                    f"column {name!r} is not in {path}; its columns are {listing(header)}",
                    (did_you_mean(name, header) or f"Use one of them, e.g. {key}: {header[0]}.")
                    + " A .tsv or .tab file is read tab-separated, other files comma-separated.",
                )


def _check_jsonl_keys(path: str, wanted: dict, encoding: str) -> None:
    names = [name for names in wanted.values() for name in names]
    found, seen = jsonl_keys(path, names, encoding)
    for key, names in wanted.items():
        for name in names:
            if name not in found:
                has = (
                    f"its objects have the keys {listing(sorted(seen))}"
                    if seen
                    else ("it has no JSON object lines")
                )
                raise ConfigError(
                    key,
                    f"key {name!r} is in no object of {path}; {has}",
                    did_you_mean(name, sorted(seen)) or "Use one of those keys.",
                )


def _check_decodes(path: str, encoding: str, jsonl: bool) -> None:
    error = first_undecodable(path, encoding, jsonl=jsonl)
    if error is not None:
        raise ConfigError(
            "data.encoding",
            f"{error.where} is not {error.encoding} text (byte {error.byte} of the file)",
            "Set data.encoding to the file's codec (e.g. --data.encoding latin-1 or cp1252; "
            "auto reads UTF-8 with or without a byte-order mark), or --data.encoding-errors "
            "skip to leave such rows out (listed in bad_inputs.txt).",
        )
