"""Text files read into rows: CSV / TSV (delimiter, quoting) and JSON Lines.

`read_csv_rows` / `read_jsonl_rows` read one file into `Rows` (texts, labels and where each
came from: `"<path> row N"`). Rows with an empty text or label, more fields than the header, or
malformed JSON are skipped and added to a `BadInputReport` (`add_row` says why); a missing
column or key, an empty file or a file in another encoding raises with the fix.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import Any

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


def _open_text(path: str, encoding: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}. Pass the path of an existing file.")
    return open(path, encoding=encoding, newline="")


def _decode_error(path: str, encoding: str, error: UnicodeDecodeError) -> ValueError:
    return ValueError(
        f"Could not read {path!r} as {encoding!r} ({error.reason} at byte {error.start}). "
        "Pass the file's encoding, e.g. encoding='utf-8-sig', 'latin-1' or 'cp1252'."
    )


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


def read_csv_rows(
    path: str,
    text_columns: list[str],
    label_column: str,
    delimiter: str | None,
    encoding: str,
    report: BadInputReport,
) -> Rows:
    """The rows of a CSV / TSV file with a header row; bad rows go to `report`."""
    rows = Rows(path)
    try:
        with _open_text(path, encoding) as f:
            reader = csv.reader(f, delimiter=_delimiter_for(path, delimiter))
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path!r} is empty; expected a header row and data rows.")
            if header and header[0].startswith("\ufeff"):  # a byte-order mark read as utf-8
                header[0] = header[0][1:]
            header = [h.strip() for h in header]
            missing = [c for c in [*text_columns, label_column] if c not in header]
            if missing:
                raise ValueError(
                    f"Column {missing[0]!r} is not in {path!r}; its columns are {header}. "
                    "Pass one of them (text_column=..., label_column=...), or check the "
                    "delimiter (delimiter=...)."
                )
            text_index = [header.index(c) for c in text_columns]
            label_index = header.index(label_column)
            for number, record in enumerate(reader, start=2):  # the header is row 1
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
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from e
    return rows


def read_jsonl_rows(
    path: str,
    text_keys: list[str],
    label_key: str,
    encoding: str,
    report: BadInputReport,
) -> Rows:
    """The rows of a JSON Lines file (one object per line); bad lines go to `report`."""
    rows = Rows(path)
    seen_keys: set[str] = set()
    found = {key: False for key in [*text_keys, label_key]}
    lines = 0
    try:
        with _open_text(path, encoding) as f:
            for number, line in enumerate(f, start=1):
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
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from e
    if lines == 0:
        raise ValueError(f"{path!r} is empty; expected one JSON object per line.")
    missing = [key for key, present in found.items() if not present]
    if missing and seen_keys:
        raise ValueError(
            f"Key {missing[0]!r} is in no row of {path!r}; its rows have the keys "
            f"{sorted(seen_keys)}. Pass one of them (text_key=..., label_key=...)."
        )
    return rows
