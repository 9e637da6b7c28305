"""Text classification data: CSV / TSV / JSONL files and Python lists as `tf.data` splits.

Every loader returns a `tfl.data.splits.DataSplits` whose datasets yield batches of
`(raw strings, int64 class indices)`. Tokenisation happens inside the model: a
`tfl.TextClassifier` built with a keras-hub preprocessor (`text_preprocessor`,
`tfl.text.bert_preprocessor`) maps it over the data in `fit` / `predict`, so the same files
work with any preset and sequence length. With several text columns (sentence pairs), `x` is a
tuple of string tensors, which keras-hub's BERT preprocessors pack as `[CLS] a [SEP] b [SEP]`.

Splits come from `hash_split` on the text itself: a row's split depends only on its text and the
seed, so appending rows to a file never moves an old row between train / validation / test, and
duplicates of one text always land in the same split (no train/test leakage through repeated
sentences). Bad rows (empty text, missing label, malformed JSON) are skipped, listed in
`data.report` (`bad_inputs.txt` in `run_dir`) and warned about once; never dropped silently.

Reading the files is `tfl.data.text_files`; labels, splits, caps and datasets from the rows are
`tfl.data.text_splits`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfl.backbones import text as tfl_text
from tfl.data.encodings import check_encoding, check_encoding_errors
from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    as_fractions,
    resolve_max_per_class,
)
from tfl.data.text_files import Rows, add_row, check_columns, read_csv_rows, read_jsonl_rows
from tfl.data.text_splits import build_splits, encode_labels, label_map_for, split_rows

DEFAULT_SPLITS = (0.8, 0.1, 0.1)


# === Reading files into splits ===


def _load_files(
    path: str | os.PathLike | Mapping[str, str | os.PathLike],
    read: Any,
    *,
    columns: list[str],
    splits: Sequence[float],
    seed: int,
    batch_size: int,
    labels: LabelMap | Sequence[str] | None,
    run_dir: str | None,
    info: dict[str, Any],
    max_per_class: MaxPerClass = None,
) -> DataSplits:
    """The shared body of `from_csv` / `from_jsonl`: read one file and split it, or read a dict
    of files that are already split; then `build_splits`."""
    resolve_max_per_class(max_per_class)  # bad caps fail before the file is read
    report = BadInputReport(kind="rows")
    if isinstance(path, Mapping):
        unknown = [k for k in path if k not in SPLIT_NAMES]
        if unknown or "train" not in path:
            raise ValueError(
                f"Received a dict of files with keys {list(path)}; expected 'train' and "
                f"optionally 'validation' and 'test'."
            )
        parts = {}
        for name in SPLIT_NAMES:
            if name in path:
                source = os.fspath(path[name])
                rows = read(source, report)
                if not rows.texts:
                    raise ValueError(
                        f"The {name} split is empty: {source!r} has no usable rows "
                        f"({report.summary()}). Fix the rows or leave the file out."
                    )
                parts[name] = rows
        info.update(source={k: os.fspath(v) for k, v in path.items()}, splits="files")
    else:
        source = os.fspath(path)
        fractions = as_fractions(splits)
        rows = read(source, report)
        if not rows.texts:
            raise ValueError(
                f"{source!r} has no usable rows ({report.summary()}). Fix the rows listed."
            )
        # Bad labels fail before anything else is built.
        encode_labels(label_map_for(rows.labels, labels), rows.labels, rows.where)
        parts = split_rows(rows, fractions, seed)
        info.update(source=source, splits=list(fractions))
    info["segments"] = len(columns)
    return build_splits(
        parts,
        labels=labels,
        seed=seed,
        batch_size=batch_size,
        report=report,
        info=info,
        run_dir=run_dir,
        stacklevel=4,  # the caller of from_csv / from_jsonl
        max_per_class=max_per_class,
    )


# === Public loaders ===


def from_csv(
    path: str | os.PathLike | Mapping[str, str | os.PathLike],
    text_column: str | Sequence[str],
    label_column: str,
    *,
    delimiter: str | None = None,
    splits: Sequence[float] = DEFAULT_SPLITS,
    seed: int = 0,
    batch_size: int = 32,
    labels: LabelMap | Sequence[str] | None = None,
    encoding: str = "auto",
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
    encoding_errors: str = "stop",
) -> DataSplits:
    """Text classification data from a CSV or TSV file with a header row.

    Fields are parsed with Python's `csv` module, so quoted texts may hold the delimiter,
    quotes (`""`) and line breaks. Rows with an empty text or label, or with more fields than
    the header, are skipped and listed in `data.report` as `"<path> row N"` (N counts records,
    the header is row 1), with one warning for all of them. Blank lines are ignored.

    Rows are split by a hash of their text (see `tfl.data.splits.hash_split`): appending rows
    never moves old ones, and repeated texts stay in one split, so none leaks into the test set.

    Args:
        path: the file, or a dict `{"train": path, "validation": path, "test": path}` of files
            that are already split ("validation" and "test" optional; `splits` is then unused).
        text_column: the text column, or a list of columns for text pairs (`x` is then a tuple
            of string tensors, packed by keras-hub's preprocessors as sentence pairs).
        label_column: the label column (names such as "pos", or integers).
        delimiter: one character; None means tab for `.tsv` / `.tab` files, else comma.
        splits: fractions `(train, validation, test)`; a fraction of 0 gives no such split.
        seed: the split seed and the training shuffle seed.
        batch_size: examples per batch.
        labels: the class names (a `LabelMap` or a list) to enforce; a label outside them
            raises ValueError naming it and its row. None: the sorted labels found (integers
            sort numerically).
        encoding: "auto" (UTF-8, with or without a byte-order mark; UTF-16/32 with one) or
            the file's codec, e.g. "latin-1" or "cp1252" (see `tfl.data.encodings`).
        max_per_class: at most this many rows of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (also for
            a dict of files; a cap never moves a row between splits) and before shuffling, so
            every epoch sees the same rows. Within a class the rows whose text hashes smallest
            are kept (`tfl.data.splits.cap_per_class`): each class keeps min(cap, available),
            and appended rows only swap in rows that hash smaller. `info["max_per_class"]` has
            the counts per class before and after.
        run_dir: if given, `labels.json`, `data.json` and `bad_inputs.txt` are written there.
        encoding_errors: "stop" (default): a row with bytes `encoding` cannot read raises
            `tfl.data.encodings.UndecodableText`, naming the row and the byte; "skip": such
            rows are left out and listed in `data.report` like other bad rows.

    Returns:
        A `DataSplits`: batched `(strings, int64 labels)`; training shuffles each epoch.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a column is missing (the message lists the columns that exist), the file
            is empty, a row is undecodable (`UndecodableText`, unless skipped), a split is
            empty, or a label is not in `labels`.

    Example:
    >>> import tempfile
    >>> from tfl.data.text import from_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "reviews.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write('text,label\\n"Great, really",pos\\nDull,neg\\nFun,pos\\n')
    >>> data = from_csv(path, "text", "label", splits=(1.0,))
    >>> data.labels.names, data.info["num_examples"]
    (['neg', 'pos'], {'train': 3})
    """
    columns = check_columns(text_column, "text_column")
    if not isinstance(label_column, str) or not label_column:
        raise ValueError(f"Received label_column={label_column!r}; expected a column name.")

    check_encoding(encoding), check_encoding_errors(encoding_errors)

    def read(source: str, report: BadInputReport) -> Rows:
        return read_csv_rows(
            source, columns, label_column, delimiter, encoding, report, encoding_errors
        )

    info = {"format": "csv", "text_column": columns, "label_column": label_column}
    return _load_files(
        path,
        read,
        columns=columns,
        splits=splits,
        seed=seed,
        batch_size=batch_size,
        labels=labels,
        run_dir=run_dir,
        info=info,
        max_per_class=max_per_class,
    )


def from_jsonl(
    path: str | os.PathLike | Mapping[str, str | os.PathLike],
    text_key: str | Sequence[str],
    label_key: str,
    *,
    splits: Sequence[float] = DEFAULT_SPLITS,
    seed: int = 0,
    batch_size: int = 32,
    labels: LabelMap | Sequence[str] | None = None,
    encoding: str = "auto",
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
    encoding_errors: str = "stop",
) -> DataSplits:
    """Text classification data from a JSON Lines file (one JSON object per line).

    Lines that are not valid JSON objects, or have an empty text or label, are skipped and
    listed in `data.report` as `"<path> row N"` (N is the 1-based line number) with one
    warning. Splits, pairs and the other options work as in `from_csv`.

    Args:
        path: the file, or a dict `{"train": path, "validation": path, "test": path}`.
        text_key: the text key, or a list of keys for text pairs.
        label_key: the label key.
        splits: fractions `(train, validation, test)`.
        seed: the split seed and the training shuffle seed.
        batch_size: examples per batch.
        labels: the class names to enforce, or None for the sorted labels found.
        encoding: "auto" or the file's codec, as in `from_csv`.
        max_per_class: rows kept per class and split, as in `from_csv`.
        run_dir: if given, `labels.json`, `data.json` and `bad_inputs.txt` are written there.
        encoding_errors: "stop" or "skip" undecodable rows, as in `from_csv`.

    Returns:
        A `DataSplits` of batched `(strings, int64 labels)`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a key is in no row (the message lists the keys that exist), the file is
            empty or undecodable, a split is empty, or a label is not in `labels`.

    Example:
    >>> import tempfile
    >>> from tfl.data.text import from_jsonl
    >>> path = os.path.join(tempfile.mkdtemp(), "reviews.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"text": "Great", "stars": 5}\\n{"text": "Dull", "stars": 1}\\n')
    >>> data = from_jsonl(path, "text", "stars", splits=(1.0,))
    >>> data.labels.names
    ['1', '5']
    """
    keys = check_columns(text_key, "text_key")
    if not isinstance(label_key, str) or not label_key:
        raise ValueError(f"Received label_key={label_key!r}; expected a key name.")

    check_encoding(encoding), check_encoding_errors(encoding_errors)

    def read(source: str, report: BadInputReport) -> Rows:
        return read_jsonl_rows(source, keys, label_key, encoding, report, encoding_errors)

    info = {"format": "jsonl", "text_key": keys, "label_key": label_key}
    return _load_files(
        path,
        read,
        columns=keys,
        splits=splits,
        seed=seed,
        batch_size=batch_size,
        labels=labels,
        run_dir=run_dir,
        info=info,
        max_per_class=max_per_class,
    )


def from_texts(
    texts: Sequence[str] | np.ndarray | tuple[Sequence[str], ...],
    labels: Sequence[Any] | np.ndarray,
    *,
    label_names: LabelMap | Sequence[str] | None = None,
    splits: Sequence[float] = DEFAULT_SPLITS,
    seed: int = 0,
    batch_size: int = 32,
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
) -> DataSplits:
    """Text classification data from Python lists or numpy arrays.

    Empty texts and missing labels (None, "") are skipped and reported as `"texts[i]"`.
    Splits work as in `from_csv` (by a hash of the text: no leakage of repeated texts).

    Args:
        texts: strings, or a tuple of equally long sequences of strings for text pairs.
        labels: one label per text: names, or integers (with `label_names`, integers in
            range are class indices).
        label_names: the class names (`LabelMap` or list) to enforce; None: the sorted labels.
        splits: fractions `(train, validation, test)`.
        seed: the split seed and the training shuffle seed.
        batch_size: examples per batch.
        max_per_class: texts kept per class and split, as in `from_csv`.
        run_dir: if given, `labels.json`, `data.json` and `bad_inputs.txt` are written there.

    Returns:
        A `DataSplits` of batched `(strings, int64 labels)`.

    Example:
    >>> from tfl.data.text import from_texts
    >>> data = from_texts(["good", "bad", "fun", "dull"], [1, 0, 1, 0], splits=(1.0,))
    >>> x, y = next(iter(data.train))
    >>> sorted(x.numpy().tolist()), data.labels.names
    ([b'bad', b'dull', b'fun', b'good'], ['0', '1'])
    """
    resolve_max_per_class(max_per_class)
    pair = isinstance(texts, tuple) and texts and not isinstance(texts[0], str)
    if not pair and np.asarray(texts, dtype=object).ndim != 1:
        raise ValueError(
            f"Received texts with shape {np.shape(texts)}; expected a flat sequence of strings, "
            "or for text pairs a tuple of two sequences: texts=(first_texts, second_texts)."
        )
    columns = [list(c) for c in texts] if pair else [list(np.asarray(texts, dtype=object))]
    values = list(np.asarray(labels, dtype=object).reshape(-1))
    lengths = {len(c) for c in columns}
    if len(lengths) != 1 or len(values) not in lengths:
        raise ValueError(
            f"Received {[len(c) for c in columns]} texts and {len(values)} labels; expected "
            "one label per text."
        )
    if not values:
        raise ValueError("Received no texts; expected at least one (text, label).")
    report = BadInputReport(kind="texts")
    rows = Rows("texts")
    for i, label in enumerate(values):
        add_row(rows, report, f"texts[{i}]", [c[i] for c in columns], label)
    if not rows.texts:
        raise ValueError(f"No usable texts: {report.summary()}")
    fractions = as_fractions(splits)
    info = {"format": "texts", "source": "texts", "splits": list(fractions)}
    info["segments"] = len(columns)
    # Bad labels fail before anything else is built.
    encode_labels(label_map_for(rows.labels, label_names), rows.labels, rows.where)
    return build_splits(
        split_rows(rows, fractions, seed),
        labels=label_names,
        seed=seed,
        batch_size=batch_size,
        report=report,
        info=info,
        run_dir=run_dir,
        stacklevel=3,
        max_per_class=max_per_class,
    )


# === Sequence length and preprocessor ===


def _segments(texts: Any) -> list[list[str]]:
    """One list of strings per segment from strings, a tuple of segments, or a dataset."""
    if isinstance(texts, DataSplits):
        if texts.train is None:
            raise ValueError("Received a DataSplits without a train split; pass texts instead.")
        texts = texts.train
    if isinstance(texts, tf.data.Dataset):
        columns: list[list[str]] = []
        for x, _ in texts.unbatch().as_numpy_iterator():
            parts = x if isinstance(x, tuple) else (x,)
            columns = columns or [[] for _ in parts]
            for column, part in zip(columns, parts, strict=True):
                column.append(part.decode("utf-8"))
        return columns
    if isinstance(texts, str):
        return [[texts]]
    if isinstance(texts, tuple) and texts and not isinstance(texts[0], str):
        return [[str(t) for t in column] for column in texts]
    return [[str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]]


def sequence_length_for(
    texts: Any,
    tokenizer: Any,
    *,
    percentile: float = 95,
    max_length: int | None = None,
    multiple_of: int = 8,
) -> int:
    """A packed sequence length that fits `percentile`% of the texts without truncation.

    Each text's length is its token count plus the special tokens the BERT packer adds (`[CLS]`
    and one `[SEP]` per segment: +2 for single texts, +3 for pairs). The `percentile` of those
    lengths is rounded up to a multiple of `multiple_of` (at least `multiple_of`) and capped at
    `max_length` (the backbone's `max_sequence_length`). Pass the TRAINING texts: choosing it
    from the test set would tune on it.

    Args:
        texts: strings, a tuple of string sequences (pairs), a dataset of `(x, y)` batches or
            a `DataSplits` (its train split).
        tokenizer: a keras-hub tokenizer, e.g. `tfl.text.load_bert_tokenizer()`.
        percentile: in (0, 100]; 100 fits every text.
        max_length: the cap, or None.
        multiple_of: round up to a multiple of this (8 suits accelerators).

    Returns:
        The sequence length, an int.

    Example:
    >>> from tfl.data.text import sequence_length_for
    >>> from tfl.backbones.text import load_bert_tokenizer
    >>> tokenizer = load_bert_tokenizer()
    >>> sequence_length_for(["a short one", "word " * 20], tokenizer, percentile=100)
    24
    >>> sequence_length_for(["word " * 600], tokenizer, max_length=512)
    512
    """
    if isinstance(percentile, bool) or not 0 < float(percentile) <= 100:
        raise ValueError(f"Received percentile={percentile!r}; expected a number in (0, 100].")
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"Received multiple_of={multiple_of!r}; expected a positive int.")
    if max_length is not None and (isinstance(max_length, bool) or int(max_length) < 2):
        raise ValueError(f"Received max_length={max_length!r}; expected an int >= 2 or None.")
    segments = _segments(texts)
    if not segments or not segments[0]:
        raise ValueError("Received no texts; expected at least one training text.")
    lengths = np.full(len(segments[0]), 1 + len(segments), dtype=np.int64)
    chunk = 1024
    for column in segments:
        for start in range(0, len(column), chunk):
            # keras-hub hands ragged outputs back as Python lists outside tf.data.
            tokens = tokenizer(tf.constant(column[start : start + chunk], dtype=tf.string))
            if isinstance(tokens, tf.RaggedTensor):
                lengths[start : start + chunk] += tokens.row_lengths().numpy()
            else:
                lengths[start : start + chunk] += [len(t) for t in tokens]
    length = float(np.percentile(lengths, float(percentile)))
    length = max(multiple_of, multiple_of * math.ceil(length / multiple_of))
    if max_length is not None:
        length = min(length, int(max_length))
    return int(length)


def text_preprocessor(
    texts: Any,
    preset: str = tfl_text.MINILM,
    *,
    sequence_length: int | str = "auto",
    percentile: float = 95,
):
    """A BERT preprocessor whose sequence length suits the training texts.

    Args:
        texts: the training texts: strings, a tuple of string sequences (pairs), a dataset of
            `(x, y)` batches, or a `DataSplits` (its train split is used).
        preset: a text preset (see `tfl.text.resolve_text_preset`).
        sequence_length: an int, or "auto": `sequence_length_for(texts, tokenizer,
            percentile=percentile)` capped at the backbone's `max_sequence_length` (when
            `tfl.text` can read it from a local preset folder).
        percentile: the percentile for "auto".

    Returns:
        `tfl.text.bert_preprocessor(preset, chosen_length)`; the length chosen is its
        `sequence_length` attribute.

    Example:
    >>> from tfl.data.text import text_preprocessor
    >>> preprocessor = text_preprocessor(["a short one", "another short text"])
    >>> preprocessor.sequence_length
    8
    """
    if sequence_length == "auto":
        resolved = tfl_text.resolve_text_preset(preset)
        tokenizer = tfl_text.load_bert_tokenizer(resolved)
        cap = tfl_text.max_sequence_length(resolved)
        sequence_length = sequence_length_for(
            texts, tokenizer, percentile=percentile, max_length=cap
        )
    elif isinstance(sequence_length, str):
        raise ValueError(
            f"Received sequence_length={sequence_length!r}; expected an int or 'auto'."
        )
    return tfl_text.bert_preprocessor(preset, sequence_length)
