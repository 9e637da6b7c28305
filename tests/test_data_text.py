"""tfl.data.text: CSV / TSV / JSONL / list loaders, bad rows, stable splits, sequence length."""

import importlib.util
import json
import os

import keras
import keras_hub
import numpy as np
import pytest

import tfl
import tfl.data.bundled
from tfl import text as tfl_text
from tfl.data.encodings import UndecodableText
from tfl.data.splits import LabelMap
from tfl.data.text import (
    from_csv,
    from_jsonl,
    from_texts,
    sequence_length_for,
    text_preprocessor,
)


@pytest.fixture(scope="module")
def tokenizer():
    if importlib.util.find_spec(tfl_text.MINILM_PACKAGE) is None:
        pytest.skip(f"needs the offline MiniLM tokenizer: {tfl_text.MINILM_INSTALL_HINT}")
    return tfl_text.load_bert_tokenizer()


def _write(path, content, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(content)
    return str(path)


def _examples(ds):
    """(x, y) pairs of a dataset in iteration order; x is a str or a tuple of str."""
    out = []
    for x, y in ds.unbatch().as_numpy_iterator():
        x = tuple(s.decode() for s in x) if isinstance(x, tuple) else x.decode()
        out.append((x, int(y)))
    return out


def _split_of(data):
    """Text -> split name for every example."""
    return {
        x: name
        for name, ds in zip(("train", "validation", "test"), data, strict=True)
        if ds is not None
        for x, _ in _examples(ds)
    }


# === Parsing ===


def test_csv_quoted_comma_quote_and_newline_come_out_exactly(tmp_path):
    path = _write(
        tmp_path / "reviews.csv",
        'text,label\n"Great, really",pos\n"line one\nline two",neg\n'
        '"She said ""wow""",pos\nplain,neg\n',
    )
    data = from_csv(path, "text", "label", splits=(1.0,), batch_size=3)
    assert data.labels == LabelMap(["neg", "pos"])
    assert data.validation is None and data.test is None
    assert sorted(_examples(data.train)) == sorted(
        [
            ("Great, really", 1),
            ("line one\nline two", 0),
            ('She said "wow"', 1),
            ("plain", 0),
        ]
    )
    assert data.info["num_examples"] == {"train": 4}
    assert data.report.count == 0


def test_tsv_by_extension_keeps_commas_and_byte_order_mark(tmp_path):
    # utf-8-sig files (Excel) start with a byte-order mark; the first column is still "text".
    path = _write(
        tmp_path / "reviews.tsv", "text\tlabel\nfun, fast\t1\ndull\t0\n", encoding="utf-8-sig"
    )
    data = from_csv(path, "text", "label", splits=(1.0,))
    assert sorted(_examples(data.train)) == [("dull", 0), ("fun, fast", 1)]
    assert data.labels.names == ["0", "1"]


def test_jsonl_integer_labels_sort_numerically(tmp_path):
    rows = [
        {"review": "ok", "stars": 10},
        {"review": "bad ü", "stars": 2},
        {"review": "x", "stars": 2.0},
    ]
    path = _write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    data = from_jsonl(path, "review", "stars", splits=(1.0,))
    assert data.labels.names == ["2", "10"]  # not "10" before "2"
    assert sorted(_examples(data.train)) == [("bad ü", 0), ("ok", 1), ("x", 0)]


def test_column_pairs_give_tuples_that_pack_as_sentence_pairs(tmp_path):
    path = _write(
        tmp_path / "nli.csv", "premise,hypothesis,label\ngood movie,fun,yes\nbad,dull movie,no\n"
    )
    data = from_csv(path, ["premise", "hypothesis"], "label", splits=(1.0,))
    assert sorted(_examples(data.train)) == [
        (("bad", "dull movie"), 0),
        (("good movie", "fun"), 1),
    ]
    from helpers import tiny_bert_preprocessor

    # Mapped over the dataset as keras-hub's fit does (calling the preprocessor on a bare
    # tuple would read it as (x, y)). The rows come shuffled: find "bad".
    packed, y = next(iter(data.train.map(tiny_bert_preprocessor())))
    row = int(np.flatnonzero(y.numpy() == 0)[0])
    # [CLS] bad [SEP] dull movie [SEP]; the second segment has segment id 1.
    np.testing.assert_array_equal(packed["token_ids"][row].numpy(), [2, 6, 3, 9, 7, 3, 0, 0])
    np.testing.assert_array_equal(packed["segment_ids"][row].numpy(), [0, 0, 0, 1, 1, 1, 0, 0])


def test_from_texts_lists_and_arrays_with_names_enforced():
    data = from_texts(
        np.array(["good", "bad", "", "fun"]),
        [1, 0, 1, 1],
        label_names=["negative", "positive"],
        splits=(1.0,),
    )
    assert data.labels.names == ["negative", "positive"]
    assert sorted(_examples(data.train)) == [("bad", 0), ("fun", 1), ("good", 1)]
    assert data.report.items == [("texts[2]", "empty text")]
    with pytest.raises(ValueError, match=r"\[3\] texts and 2 labels"):
        from_texts(["a", "b", "c"], [0, 1])
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*texts=\(first_texts, second_texts\)"):
        from_texts([("a", "b"), ("c", "d")], [0, 1])
    with pytest.warns(UserWarning, match="skipped") as record:
        from_texts(["a", "", "b"], [0, 1, 1], splits=(1.0,))
    assert record[0].filename == __file__


# === Bad input ===


def test_missing_column_names_it_the_file_and_existing_columns(tmp_path):
    path = _write(tmp_path / "data.csv", "sentence,label\nhi,1\n")
    with pytest.raises(ValueError, match="data.csv") as info:
        from_csv(path, "text", "label")
    message = str(info.value)
    assert "'text'" in message and "['sentence', 'label']" in message
    jsonl = _write(tmp_path / "data.jsonl", '{"sentence": "hi", "label": 1}\n')
    with pytest.raises(ValueError, match=r"'text'.*data.jsonl.*\['label', 'sentence'\]"):
        from_jsonl(jsonl, "text", "label")


def test_bad_rows_are_skipped_reported_with_row_numbers_and_saved(tmp_path):
    path = _write(
        tmp_path / "d.csv",
        'text,label\ngood,pos\n"",pos\nbad,neg\n\nfine,\ntoo,many,fields\n"two\nlines",neg\n   ,neg\n',
    )
    run_dir = str(tmp_path / "run")
    with pytest.warns(UserWarning, match="4 of 7 rows were skipped") as record:
        data = from_csv(path, "text", "label", splits=(1.0,), run_dir=run_dir)
    assert len([w for w in record if "skipped" in str(w.message)]) == 1
    assert record[0].filename == __file__  # the warning points at the caller's line
    # Records, not lines: row 6 is blank, "two\nlines" is row 8 although it spans two lines.
    assert [(w.rsplit(" ", 1)[-1], r.split(" ")[0]) for w, r in data.report.items] == [
        ("3", "empty"),
        ("6", "empty"),
        ("7", "3"),
        ("9", "empty"),
    ]
    assert sorted(_examples(data.train)) == [("bad", 0), ("good", 1), ("two\nlines", 0)]
    with open(os.path.join(run_dir, "bad_inputs.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == f"{path} row 3\tempty text"
    assert lines[1] == f"{path} row 6\tempty label"
    assert LabelMap.load(run_dir) == data.labels
    with open(os.path.join(run_dir, "data.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["num_examples"] == {"train": 3} and saved["skipped"] == 4


def test_malformed_jsonl_line_is_reported(tmp_path):
    path = _write(
        tmp_path / "d.jsonl",
        '{"t": "good", "y": "pos"}\n{"t": "bad", "y": \n[1, 2]\n{"t": "meh", "y": "neg"}\n'
        '{"t": "no label"}\n',
    )
    with pytest.warns(UserWarning, match="3 of 5 rows"):
        data = from_jsonl(path, "t", "y", splits=(1.0,))
    wheres = [w for w, _ in data.report.items]
    assert wheres == [f"{path} row 2", f"{path} row 3", f"{path} row 5"]
    assert data.report.items[0][1].startswith("malformed JSON")
    assert sorted(_examples(data.train)) == [("good", 1), ("meh", 0)]


def test_label_outside_the_given_labels_names_label_and_row(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\na,pos\nb,neutral\nc,neg\n")
    with pytest.raises(ValueError, match=r"'neutral' at .*d.csv row 3.*\['neg', 'pos'\]"):
        from_csv(path, "text", "label", labels=["neg", "pos"])
    # Index labels ("0", "1") map onto given names.
    indexed = _write(tmp_path / "i.csv", "text,label\na,1\nb,0\n")
    data = from_csv(indexed, "text", "label", labels=LabelMap(["neg", "pos"]), splits=(1.0,))
    assert sorted(_examples(data.train)) == [("a", 1), ("b", 0)]


def test_empty_file_empty_split_and_wrong_encoding_are_named(tmp_path):
    with pytest.raises(ValueError, match="empty.csv' is empty"):
        from_csv(_write(tmp_path / "empty.csv", ""), "text", "label")
    with pytest.raises(ValueError, match="no usable rows"):
        from_csv(_write(tmp_path / "header.csv", "text,label\n"), "text", "label")
    with pytest.raises(ValueError, match="empty.jsonl' is empty"):
        from_jsonl(_write(tmp_path / "empty.jsonl", "\n\n"), "text", "label")
    one = _write(tmp_path / "one.csv", "text,label\nhello,1\n")
    with pytest.raises(ValueError, match=r"The (validation|test) split is empty.*fraction to 0"):
        from_csv(one, "text", "label", splits=(0.5, 0.25, 0.25))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        from_csv(str(tmp_path / "nope.csv"), "text", "label")


# === Encodings ===

LATIN1_ROWS = "text,label\nfun,pos\ncafé crème,pos\ndull,neg\n"


def test_one_latin1_byte_names_row_and_byte_and_reads_with_the_encoding(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(LATIN1_ROWS.encode("latin-1"))
    with pytest.raises(UndecodableText, match=r"latin.csv row 3 is not utf-8 text .*offset 22"):
        from_csv(str(latin), "text", "label")
    data = from_csv(str(latin), "text", "label", encoding="latin-1", splits=(1.0,))
    assert sorted(_examples(data.train)) == [("café crème", 1), ("dull", 0), ("fun", 1)]
    # Skipped instead: reported by file and row like other bad rows, saved to bad_inputs.txt.
    run_dir = str(tmp_path / "run")
    with pytest.warns(UserWarning, match="1 of 3 rows were skipped"):
        data = from_csv(str(latin), "text", "label", splits=(1.0,), encoding_errors="skip",
                        run_dir=run_dir)  # fmt: skip
    assert sorted(_examples(data.train)) == [("dull", 0), ("fun", 1)]
    with open(os.path.join(run_dir, "bad_inputs.txt"), encoding="utf-8") as f:
        assert f.read() == f"{latin} row 3\tbytes that are not utf-8 text\n"
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes('{"t": "ok", "y": 1}\n{"t": "né", "y": 0}\n'.encode("latin-1"))
    with pytest.raises(UndecodableText, match="latin.jsonl row 2"):
        from_jsonl(str(jsonl), "t", "y")


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-8"])
def test_auto_encoding_reads_utf8_with_or_without_a_byte_order_mark(tmp_path, codec):
    path = _write(tmp_path / "d.csv", LATIN1_ROWS, encoding=codec)
    data = from_csv(path, "text", "label", splits=(1.0,))
    assert ("café crème", 1) in _examples(data.train)
    with pytest.raises(ValueError, match="encoding='utf-9'; expected 'auto' or a Python codec"):
        from_csv(path, "text", "label", encoding="utf-9")


# === Splits, order, fingerprints ===


def test_adding_rows_moves_no_old_row_and_duplicates_stay_together(tmp_path):
    rows = [f"sentence number {i},{i % 2}\n" for i in range(60)]
    path = tmp_path / "grow.csv"
    _write(path, "text,label\n" + "".join(rows))
    before = _split_of(from_csv(str(path), "text", "label", batch_size=7))
    assert set(before.values()) == {"train", "validation", "test"}
    more = [f"another sentence {i},{i % 2}\n" for i in range(60)]
    _write(path, "text,label\n" + "".join(more[:30] + rows + more[30:]))
    after = _split_of(from_csv(str(path), "text", "label", batch_size=7))
    assert {t: after[t] for t in before} == before
    # The same text appears 5 times: all copies land in one split (no leakage).
    _write(path, "text,label\n" + "".join(rows) + "repeated text,1\n" * 5)
    data = from_csv(str(path), "text", "label", seed=3)
    copies = {
        name: sum(x == "repeated text" for x, _ in _examples(ds))
        for name, ds in zip(("train", "validation", "test"), data, strict=True)
    }
    assert sorted(copies.values()) == [0, 0, 5]


def test_dict_of_files_and_class_counts(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\na,x\nb,y\nc,y\n")
    test = _write(tmp_path / "test.csv", "text,label\nd,y\n")
    with pytest.warns(UserWarning, match="class 'x' has no examples in the test split"):
        data = from_csv({"train": train, "test": test}, "text", "label")
    assert data.validation is None
    assert _examples(data.test) == [("d", 1)]
    assert data.info["counts"] == {"train": {"x": 1, "y": 2}, "test": {"x": 0, "y": 1}}
    with pytest.raises(ValueError, match="'valid'"):
        from_csv({"train": train, "valid": test}, "text", "label")


def test_train_reshuffles_each_epoch_and_evaluation_splits_keep_order_and_fingerprints():
    texts = [f"text {i:02d}" for i in range(40)]
    data = from_texts(texts, [i % 3 for i in range(40)], splits=(0.5, 0.5), batch_size=4)
    first, second = _examples(data.train), _examples(data.train)
    assert first != second and sorted(first) == sorted(second)
    val = [x for x, _ in _examples(data.validation)]
    assert val == sorted(val) and _examples(data.validation) == _examples(data.validation)
    assert data.augmented is False
    assert [len(data.fingerprints[s]) for s in ("train", "validation")] == [64, 64]
    assert data.test is None

    def fingerprints(**kwargs):
        labels = kwargs.pop("labels", [i % 3 for i in range(40)])
        d = from_texts(texts, labels, splits=(0.5, 0.5), **{"batch_size": 4, **kwargs})
        return d.fingerprints["train"], d.fingerprints["validation"]

    same = fingerprints()
    assert same == (data.fingerprints["train"], data.fingerprints["validation"])
    assert len(set(same)) == 2
    assert fingerprints(batch_size=8)[1] != same[1]
    changed = [i % 3 for i in range(40)]
    moved = [i for i in range(40) if f"text {i:02d}" in val][0]
    changed[moved] = (changed[moved] + 1) % 3  # one validation label changes
    assert fingerprints(labels=changed) == (same[0], fingerprints(labels=changed)[1])
    assert fingerprints(labels=changed)[1] != same[1]


# === Sequence length ===


@pytest.mark.assets
def test_sequence_length_for_matches_a_hand_count(tokenizer):
    texts = ["Hello world", "Transfer learning is fun", "word " * 20, "a b c d e f g h i j"]
    counts = sorted(len(tokenizer.tokenize(t)) + 2 for t in texts)  # [CLS] and [SEP]
    assert counts == [4, 6, 12, 22]  # by hand: whole words, one piece each
    assert sequence_length_for(texts, tokenizer, percentile=100) == 24
    # 50th percentile of [4, 6, 12, 22] is 9 -> 16; 25th is 5.5 -> 8 (never below 8).
    assert sequence_length_for(texts, tokenizer, percentile=50) == 16
    assert sequence_length_for(texts, tokenizer, percentile=25) == 8
    assert sequence_length_for(texts, tokenizer, percentile=100, max_length=20) == 20
    assert sequence_length_for(texts, tokenizer, percentile=100, multiple_of=5) == 25
    # Pairs: [CLS] a [SEP] b [SEP] -> 3 specials.
    pairs = (["Hello world", "fun"], ["word " * 20, "a"])
    assert sequence_length_for(pairs, tokenizer, percentile=100, multiple_of=1) == 2 + 20 + 3
    with pytest.raises(ValueError, match="percentile=0"):
        sequence_length_for(texts, tokenizer, percentile=0)
    with pytest.raises(ValueError, match="no texts"):
        sequence_length_for([], tokenizer)


@pytest.mark.assets
def test_text_preprocessor_auto_length_from_training_texts_and_cap(tokenizer):
    long_texts = ["word " * 600, "word " * 700]
    assert text_preprocessor(long_texts).sequence_length == 512  # MiniLM's position limit
    texts = [f"review number {i} " + "good " * (i % 9) for i in range(40)]
    data = from_texts(texts, [i % 2 for i in range(40)])
    train_texts = [x for x, _ in _examples(data.train)]
    expected = sequence_length_for(train_texts, tokenizer)
    preprocessor = text_preprocessor(data)
    assert isinstance(preprocessor, keras_hub.models.BertTextClassifierPreprocessor)
    assert preprocessor.sequence_length == expected == 16
    assert text_preprocessor(texts, sequence_length=12).sequence_length == 12
    with pytest.raises(ValueError, match="sequence_length='long'"):
        text_preprocessor(texts, sequence_length="long")


# === End to end ===


@pytest.mark.assets
def test_from_texts_preprocessor_and_text_classifier_fit(tokenizer):
    texts, labels = tfl.data.bundled.load_movie_sentences()
    data = from_texts(texts[:24], labels[:24], splits=(0.75, 0.25), batch_size=8)
    preprocessor = text_preprocessor(data)
    # A tiny random BERT sharing MiniLM's vocabulary, so the real tokenizer's ids fit.
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=4,
        intermediate_dim=8,
        max_sequence_length=preprocessor.sequence_length,
    )
    model = tfl.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.numpy().copy() for w in model.head.trainable_weights]
    history = model.fit(data.train, validation_data=data.validation, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "val_loss" in history.history
    assert any(
        not np.allclose(a, w.numpy())
        for a, w in zip(before, model.head.trainable_weights, strict=True)
    )
    n_val = data.info["num_examples"]["validation"]
    assert model.predict(data.validation, verbose=0).shape == (n_val, 2)


# === max_per_class ===


def test_max_per_class_caps_each_split_and_is_stable_when_rows_are_appended(tmp_path):
    rows = [f"review {i},{'pos' if i % 4 else 'neg'}\n" for i in range(80)]  # 60 pos, 20 neg
    path = _write(tmp_path / "reviews.csv", "text,label\n" + "".join(rows))
    caps = {"train": 8, "test": 3}
    full = from_csv(path, "text", "label")
    data = from_csv(path, "text", "label", max_per_class=caps)
    info = data.info["max_per_class"]
    assert info["cap"] == {"train": 8, "validation": None, "test": 3}
    assert info["before"] == full.info["counts"]
    for split, cap in [("train", 8), ("validation", None), ("test", 3)]:
        want = {c: n if cap is None else min(cap, n) for c, n in info["before"][split].items()}
        assert data.info["counts"][split] == info["after"][split] == want
        labels = [y for _, y in _examples(getattr(data, split))]
        assert [labels.count(0), labels.count(1)] == list(want.values())
    assert data.info["num_examples"]["train"] == 16
    # A cap chooses within a split: every kept row keeps the split it had without the cap.
    split_of = _split_of(full)
    assert all(split_of[t] == s for t, s in _split_of(data).items())
    assert data.fingerprints["train"] != full.fingerprints["train"]
    assert data.fingerprints["validation"] == full.fingerprints["validation"]  # uncapped

    # Appended neg rows leave the pos choice alone; appended pos rows only swap in new rows.
    def kept(d, label):
        return {x for x, y in _examples(d.train) if y == label}

    _write(path, "text,label\n" + "".join(rows) + "".join(f"new neg {i},neg\n" for i in range(20)))
    more_neg = from_csv(path, "text", "label", max_per_class=caps)
    assert kept(more_neg, 1) == kept(data, 1)
    _write(path, "text,label\n" + "".join(rows) + "".join(f"new pos {i},pos\n" for i in range(20)))
    more_pos = kept(from_csv(path, "text", "label", max_per_class=caps), 1)
    assert len(more_pos) == 8 and all(t.startswith("new pos") for t in more_pos - kept(data, 1))


def test_max_per_class_for_texts_files_and_bad_values(tmp_path):
    texts = [f"text {i}" for i in range(30)]
    labels = [i % 3 for i in range(30)]
    data = from_texts(texts, labels, splits=(1.0,), max_per_class=4)
    assert data.info["counts"]["train"] == {"0": 4, "1": 4, "2": 4}
    first = [x for x, _ in _examples(data.train)]
    assert sorted(first) == sorted(x for x, _ in _examples(data.train))  # same rows each epoch
    # A dict of files: each file is its split, capped by its own cap.
    lines = "".join(f'{{"t": "{t}", "y": {y}}}\n' for t, y in zip(texts, labels, strict=True))
    train = _write(tmp_path / "train.jsonl", lines)
    test = _write(tmp_path / "test.jsonl", lines)
    files = from_jsonl({"train": train, "test": test}, "t", "y", max_per_class={"test": 2})
    assert files.info["counts"] == {
        "train": {"0": 10, "1": 10, "2": 10},
        "test": {"0": 2, "1": 2, "2": 2},
    }
    for bad, message in [
        (0, r"max_per_class=0; expected a positive int"),
        ({"test": -1}, r"max_per_class\['test'\]=-1; expected a positive int"),
        ({"valid": 5}, r"split name 'valid'; expected keys from"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_texts(texts, labels, max_per_class=bad)
    with pytest.raises(ValueError, match=r"max_per_class=0"):
        from_csv(str(tmp_path / "missing.csv"), "text", "label", max_per_class=0)
