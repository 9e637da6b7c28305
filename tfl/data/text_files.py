"""Text files read into rows: CSV / TSV (delimiter, quoting) and JSON Lines.

`read_csv_rows` / `read_jsonl_rows` read one file into `Rows` (texts, labels and where each
came from: `"<path> row N"`). Rows with an empty text or label, more fields than the header, or
malformed JSON are skipped and added to a `BadInputReport` (`add_row` says why); so are rows
with bytes the encoding cannot read when `encoding_errors="skip"` (`tfl.data.encodings`). A
missing column or key, an empty file or (by default) an undecodable row raises with the fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any

from tfl.data.encodings import (
    AUTO,
    DecodedText,
    UndecodableText,
    check_encoding,
    detect_encoding,
    has_undecodable,
    read_text,
)
from tfl.data.splits import BadInputReport


class Rows:
    """Rows read from one file: texts (tuples for pairs), label strings and where each came from."""

    def __init__(self, source: str):
        self.source = source
        self.texts: list[tuple[str, ...]] = []
        self.labels: list[Any] = []
        self.where: list[str] = []

    def take(self, indices: Sequence[int]) -> Rows:
        """The rows at `indices`, in that order (same source)."""
        part = Rows(self.source)
        part.texts = [self.texts[i] for i in indices]
        part.labels = [self.labels[i] for i in indices]
        part.where = [self.where[i] for i in indices]
        return part


def check_columns(value: str | Sequence[str], name: str) -> list[str]:
    """A column (or key) name or a list of them -> the list; raises naming `name`."""
    columns = [value] if isinstance(value, str) else list(value)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(
            f"Received {name}={value!r}; expected a column name or a list of column names."
        )
    return columns


def _decoded_records(decoded: DecodedText, records, label, errors: str, report):
    """The records of a decoded file as `(number, record)`; a record with undecodable bytes
    is skipped into `report` ("skip") or stops with `UndecodableText` ("stop")."""
    for number, record in records:
        text = record if isinstance(record, str) else "\x1f".join(record)
        if has_undecodable(text):
            where = f"{decoded.path} {label} {number}"
            if errors == "stop":
                raise decoded.error(where)
            report.add(where, f"bytes that are not {decoded.encoding} text")
            continue
        yield number, record


def _delimiter_for(path: str, delimiter: str | None) -> str:
    if delimiter is not None:
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"Received delimiter={delimiter!r}; expected one character.")
        return delimiter
    return "\t" if path.lower().endswith((".tsv", ".tab")) else ","


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def add_row(
    rows: Rows,
    report: BadInputReport,
    where: str,
    texts: Sequence[Any],
    label: Any,
) -> None:
    """Keeps a row, or records why it is skipped (empty text, missing label)."""
    if any(_is_blank(t) for t in texts):
        report.add(where, "empty text")
    elif _is_blank(label):
        report.add(where, "empty label")
    elif isinstance(label, (list, dict)):
        report.add(where, f"label {label!r} is not a single value")
    else:
        rows.texts.append(tuple(str(t) for t in texts))
        rows.labels.append(label)
        rows.where.append(where)


def read_csv_header(path: str, delimiter: str | None = None, encoding: str = AUTO) -> list[str]:
    """The column names of a CSV / TSV file (its first row), without a byte-order mark.

    Example:
    >>> import os, tempfile
    >>> from tfl.data.text_files import read_csv_header
    >>> path = os.path.join(tempfile.mkdtemp(), "a.tsv")
    >>> _ = open(path, "w", encoding="utf-8-sig").write("review\\t stars\\nfun\\t5\\n")
    >>> read_csv_header(path)
    ['review', 'stars']
    """
    check_encoding(encoding)
    codec = detect_encoding(_head(path)) if encoding == AUTO else encoding
    with open(path, encoding=codec, errors="replace", newline="") as f:
        header = next(csv.reader(f, delimiter=_delimiter_for(path, delimiter)), None)
    if header is None:
        raise ValueError(f"{path!r} is empty; expected a header row and data rows.")
    if header and header[0].startswith("\ufeff"):  # a byte-order mark read as utf-8
        header[0] = header[0][1:]
    return [h.strip() for h in header]


def read_csv_rows(
    path: str,
    text_columns: list[str],
    label_column: str,
    delimiter: str | None,
    encoding: str,
    report: BadInputReport,
    encoding_errors: str = "stop",
) -> Rows:
    """The rows of a CSV / TSV file with a header row; bad rows go to `report`.

    Rows with bytes that `encoding` cannot read are skipped into `report`
    (`encoding_errors="skip"`) or raise `UndecodableText` ("stop")."""
    rows = Rows(path)
    header = read_csv_header(path, delimiter, encoding)
    missing = [c for c in [*text_columns, label_column] if c not in header]
    if missing:
        raise ValueError(
            f"Column {missing[0]!r} is not in {path!r}; its columns are {header}. "
            "Pass one of them (text_column=..., label_column=...), or check the "
            "delimiter (delimiter=...)."
        )
    text_index = [header.index(c) for c in text_columns]
    label_index = header.index(label_column)
    decoded = read_text(path, encoding)
    reader = csv.reader(
        io.StringIO(decoded.text, newline=""), delimiter=_delimiter_for(path, delimiter)
    )
    next(reader)  # the header
    records = enumerate(reader, start=2)  # the header is row 1
    for number, record in _decoded_records(decoded, records, "row", encoding_errors, report):
        if not record or all(not field.strip() for field in record):
            continue  # blank lines hold no example
        where = f"{path} row {number}"
        if len(record) > len(header):
            report.add(
                where,
                f"{len(record)} fields but the header has {len(header)} (quote texts "
                "that contain the delimiter)",
            )
            continue
        record = record + [""] * (len(header) - len(record))
        add_row(rows, report, where, [record[i] for i in text_index], record[label_index])
    return rows


def read_jsonl_rows(
    path: str,
    text_keys: list[str],
    label_key: str,
    encoding: str,
    report: BadInputReport,
    encoding_errors: str = "stop",
) -> Rows:
    """The rows of a JSON Lines file (one object per line); bad lines go to `report`
    (undecodable ones too with `encoding_errors="skip"`)."""
    rows = Rows(path)
    seen_keys: set[str] = set()
    found = {key: False for key in [*text_keys, label_key]}
    lines = 0
    decoded = read_text(path, check_encoding(encoding))
    numbered = enumerate(io.StringIO(decoded.text, newline=""), start=1)
    for number, line in _decoded_records(decoded, numbered, "row", encoding_errors, report):
        if not line.strip():
            continue
        lines += 1
        where = f"{path} row {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            report.add(where, f"malformed JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(item, dict):
            report.add(where, f"a JSON {type(item).__name__}, not an object")
            continue
        seen_keys.update(item)
        for key in found:
            found[key] = found[key] or key in item
        add_row(rows, report, where, [item.get(k) for k in text_keys], item.get(label_key))
    if lines == 0 and not report.count:
        raise ValueError(f"{path!r} is empty; expected one JSON object per line.")
    missing = [key for key, present in found.items() if not present]
    if missing and seen_keys:
        raise ValueError(
            f"Key {missing[0]!r} is in no row of {path!r}; its rows have the keys "
            f"{sorted(seen_keys)}. Pass one of them (text_key=..., label_key=...)."
        )
    return rows


def jsonl_keys(path: str, wanted: Sequence[str], encoding: str = AUTO) -> tuple[set, set]:
    """`(found, seen)`: which of `wanted` some object of a JSON Lines file has, and all the
    keys seen; reads until every wanted key is found (often the first line).

    Example:
    >>> import os, tempfile
    >>> from tfl.data.text_files import jsonl_keys
    >>> path = os.path.join(tempfile.mkdtemp(), "a.jsonl")
    >>> _ = open(path, "w").write('{"review": "fun", "stars": 5}\\n')
    >>> found, seen = jsonl_keys(path, ["text", "stars"])
    >>> sorted(found), sorted(seen)
    (['stars'], ['review', 'stars'])
    """
    wanted_set, found, seen = set(wanted), set(), set()
    codec = detect_encoding(_head(path)) if encoding == AUTO else encoding
    with open(path, encoding=codec, errors="replace", newline="") as f:
        for line in f:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                seen.update(item)
                found |= wanted_set & set(item)
                if found == wanted_set:
                    break
    return found, seen


def first_undecodable(
    path: str, encoding: str = AUTO, delimiter: str | None = None, jsonl: bool = False
) -> UndecodableText | None:
    """The error for the first row of a CSV / JSONL file that `encoding` cannot read, or None.

    Example:
    >>> import os, tempfile
    >>> from tfl.data.text_files import first_undecodable
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "wb").write(b'text,label\\n"two\\nlines",a\\ncaf\\xe9,b\\n')
    >>> error = first_undecodable(path)
    >>> error.where.endswith("a.csv row 3"), error.byte, first_undecodable(path, "cp1252")
    (True, 28, None)
    """
    decoded = read_text(path, encoding)
    if decoded.first_bad_byte is None:
        return None
    stream = io.StringIO(decoded.text, newline="")
    records = stream if jsonl else csv.reader(stream, delimiter=_delimiter_for(path, delimiter))
    try:
        for _ in _decoded_records(decoded, enumerate(records, start=1), "row", "stop", None):
            pass
    except UndecodableText as error:
        return error
    return decoded.error(path)


def _head(path: str) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}. Pass the path of an existing file.")
    with open(path, "rb") as f:
        return f.read(4)
