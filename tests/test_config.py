"""tfl.config: per-recipe defaults, YAML round trip, precedence, flags and every error message."""

import argparse
import dataclasses

import keras
import numpy as np
import pytest

from tfl import config as cfg
from tfl.backbones.text import MINILM
from tfl.config import ConfigError, defaults, from_args, from_dict, load_yaml, to_yaml, validate


@pytest.fixture(autouse=True)
def _seed():
    # Overrides conftest's per-test seeding and keras.backend.clear_session() (~0.3 s a test):
    # these tests build no models.
    yield


def parse(*argv):
    return from_args(cfg.add_arguments(argparse.ArgumentParser()).parse_args(list(argv)))


def error_of(tree):
    with pytest.raises(ConfigError) as info:
        validate(from_dict(tree))
    return info.value


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# === Defaults ===


@pytest.mark.parametrize("recipe", cfg.RECIPES)
def test_every_recipe_default_validates_and_validating_again_changes_nothing(recipe):
    config = validate(defaults(recipe))
    assert config.recipe == recipe
    assert config.name == f"{recipe}-{config.data.name}"
    assert validate(config) == config
    # Never silently not pretrained.
    assert "none" not in (config.model.weights, *config.model.weights)


def test_image_default_is_todays_tfl_train():
    config = validate(defaults())
    assert config == validate(cfg.RunConfig())
    assert (config.data.source, config.data.name, config.data.image_size) == ("tfds", "mnist5k", 96)
    assert config.data.max_per_class == {"train": 50, "validation": 50, "test": 100}
    assert (config.model.base, config.model.weights) == ("mobilenet_v2_torchvision", "imagenet")
    assert (config.train.head_epochs, config.train.finetune_epochs) == (10, 5)


def test_recipe_defaults_differ_where_the_recipe_needs_it():
    text = defaults("text_classification")
    assert (text.data.name, text.model.base, text.model.pooling) == (
        "movie_sentences",
        MINILM,
        "mean",
    )
    assert (text.train.head_epochs, text.train.finetune_epochs) == (1, 3)
    assert text.data.image_size is None and text.data.sequence_length == "auto"
    features = defaults("feature_extraction")
    assert (features.train.schedule, features.model.head) == ("feature_extraction", "svm")
    assert features.train.finetune_epochs == 0
    fusion = defaults("feature_fusion")
    assert len(fusion.model.base) == 2 and len(set(fusion.model.base)) == 2
    tasks = defaults("multitask").model.tasks
    assert tasks["parity"]["label_column"] == "label:parity"


def test_derived_parity_label():
    from tfl.tasks import DERIVED_LABELS

    parity = DERIVED_LABELS["parity"]
    assert parity.numpy(np.array([0, 1, 2, 7, 8])).tolist() == [0, 1, 0, 1, 0]
    assert parity.tensor(np.array([0, 1, 2, 7, 8])).numpy().tolist() == [0, 1, 0, 1, 0]
    assert parity.class_names == ("even", "odd")


def test_a_label_column_with_colons_is_parsed_at_its_last_colon_everywhere():
    from tfl.tasks import Task, parse_label_column

    assert parse_label_column("a:b:parity") == ("a:b", "parity")
    # Validation and the task description agree: a column that is not the data's label
    # column is refused before any work (it used to pass validation and crash the run).
    tasks = {"digit": {"label_column": "label"}, "parity": {"label_column": "a:b:parity"}}
    with pytest.raises(ConfigError) as error:
        validate(from_dict({"recipe": "multitask", "model": {"tasks": tasks}}))
    assert error.value.key == "model.tasks.parity.label_column"
    assert "'a:b:parity'" in str(error.value) and "data.label_column" in str(error.value)
    # With that column as the data's label column, the run's targets are computed from it
    # (this is where the old parsing crashed: it looked up the derivation "b:parity").
    tasks = {"digit": {"label_column": "a:b"}, "parity": {"label_column": "a:b:parity"}}
    config = validate(
        from_dict(
            {"recipe": "multitask", "data": {"label_column": "a:b"}, "model": {"tasks": tasks}}
        )
    )
    task = Task.from_config(config)
    assert [(o.name, o.column, o.derivation) for o in task.outputs] == [
        ("digit", "a:b", None),
        ("parity", "a:b", "parity"),
    ]
    targets = task.targets(np.array([3, 4, 7]))
    assert targets["digit"].tolist() == [3, 4, 7] and targets["parity"].numpy().tolist() == [
        1,
        0,
        1,
    ]
    assert task.class_names(["0", "1"])["parity"] == ["even", "odd"]


def test_every_listed_optimizer_is_a_keras_optimizer_name():
    for name in cfg.OPTIMIZERS:
        assert isinstance(keras.optimizers.get(name), keras.optimizers.Optimizer), name


# === YAML ===


@pytest.mark.parametrize("recipe", cfg.RECIPES)
def test_yaml_round_trip_of_every_recipe(recipe, tmp_path):
    config = validate(defaults(recipe))
    path = write(tmp_path, to_yaml(config))
    assert from_dict(load_yaml(path)) == config
    assert validate(from_dict(load_yaml(path))) == config


def test_yaml_round_trip_of_non_default_values(tmp_path):
    csv = write(tmp_path, "a,b,label\nx,y,pos\n", "pairs.csv")
    config = validate(
        from_dict(
            {
                "recipe": "text_classification",
                "data": {
                    "source": "csv",
                    "path": csv,
                    "text_column": ["a", "b"],
                    "max_per_class": None,
                    "splits": [0.7, 0.15, 0.15],
                    "sequence_length": 64,
                },
                "train": {"unfreeze": ["layer_5"], "finetune_learning_rate": "2e-5", "l2sp": 0.01},
            }
        )
    )
    assert config.train.finetune_learning_rate == 2e-5  # PyYAML's string "2e-5" -> float
    assert config.data.text_column == ("a", "b") and config.data.max_per_class is None
    assert config.name == "text_classification-pairs"
    assert from_dict(load_yaml(write(tmp_path, to_yaml(config)))) == config


def test_to_yaml_writes_every_key_in_block_sections():
    text = to_yaml(validate(defaults()))
    for leaf in cfg.LEAVES:
        assert f"{leaf.rsplit('.', 1)[-1]}:" in text, leaf
    assert "\ntrain:\n  schedule: two_phase\n" in text
    assert "  splits: [0.8, 0.1, 0.1]\n" in text


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "recipe: image_classification\ndata:\n  batch_size: 8\n   name: x\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}:4:")
    assert "not valid YAML" in str(info.value)


def test_yaml_duplicate_key_names_both_lines(tmp_path):
    path = write(tmp_path, "train:\n  head_epochs: 1\ntrain:\n  head_epochs: 2\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'train'") as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}:3:")
    assert "first 'train' on line 1" in str(info.value)


def test_yaml_missing_file_and_wrong_top_level(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: the file .* does not exist.*print-config"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(write(tmp_path, "- a\n- b\n"))
    assert load_yaml(write(tmp_path, "")) == {}


# === Precedence and flags ===


def test_precedence_defaults_then_yaml_then_flags(tmp_path):
    path = write(
        tmp_path,
        "recipe: feature_extraction\ndata:\n  batch_size: 16\n  max_per_class: {train: 20}\n"
        "train:\n  head_epochs: 2\n",
    )
    config = parse("--config", path, "--data.batch-size", "8")
    assert config.data.batch_size == 8  # flag over YAML
    assert config.train.head_epochs == 2  # YAML over the recipe default
    assert config.model.head == "svm"  # the YAML's recipe picked the defaults
    assert config.data.max_per_class == {"train": 20, "validation": 50, "test": 100}
    # --recipe beats the file's recipe and picks its defaults; the file still applies.
    config = parse("--config", path, "--recipe", "image_classification")
    assert (config.model.head, config.train.finetune_epochs) == ("classification", 5)
    assert (config.train.head_epochs, config.data.batch_size) == (2, 16)


def test_set_any_leaf_with_yaml_typed_values():
    config = parse(
        "--set",
        "train.head_epochs=2",
        "--set",
        "train.head-learning-rate=1e-3",
        "--set",
        "data.augment=flip,zoom",
        "--set",
        "data.max_per_class.test=null",
        "--set",
        "data.image_size=null",
        "--set",
        "name=123",
    )
    assert config.train.head_epochs == 2
    assert config.train.head_learning_rate == 0.001
    assert config.data.augment == ("flip", "zoom")
    assert config.data.max_per_class == {"train": 50, "validation": 50, "test": None}
    assert config.data.image_size is None
    assert config.name == "123"  # free text stays a string


def test_set_reaches_into_tasks_and_flags_take_lists():
    config = parse(
        "--recipe",
        "multitask",
        "--set",
        "model.tasks.parity.head=mlp",
        "--set",
        "model.tasks.size.label_column=label",
    )
    assert config.model.tasks == {
        "digit": {"head": "classification", "label_column": "label"},
        "parity": {"head": "mlp", "label_column": "label:parity"},
        "size": {"head": "classification", "label_column": "label"},
    }
    config = parse(
        "--recipe", "feature_fusion", "--model.base", "mobilenet_v2_torchvision,resnet50"
    )
    assert config.model.base == ("mobilenet_v2_torchvision", "resnet50")


def test_max_per_class_flag_merges_per_split_like_the_yaml_file():
    config = parse("--data.max-per-class", "{train: 10}", "--train.cache", "true")
    assert config.data.max_per_class == {"train": 10, "validation": 50, "test": 100}
    assert config.train.cache is True
    config = parse("--data.max-per-class", "null", "--set", "train.cache='false'")
    assert config.data.max_per_class is None and config.train.cache is False


def test_todays_tfl_train_flags_still_work():
    config = parse("--image-size", "64", "--batch-size", "4", "--epochs-head", "1", "--seed", "3")
    assert (config.data.image_size, config.data.batch_size) == (64, 4)
    assert (config.train.head_epochs, config.seed) == (1, 3)


def test_every_leaf_has_a_flag():
    parser = cfg.add_arguments(argparse.ArgumentParser())
    for leaf in cfg.LEAVES:
        args = parser.parse_args([cfg.flag_name(leaf), "x"])
        assert getattr(args, "config:" + leaf) == "x"


@pytest.mark.parametrize(
    "argv, key, text",
    [
        (["--set", "train.head_epochs"], "--set", "expected KEY=VALUE"),
        (["--set", "trian.head_epochs=2"], "trian", "Did you mean 'train'?"),
        (["--set", "head_epochs=2"], "head_epochs", "Did you mean 'train.head_epochs'?"),
        (["--set", "seed.x=1"], "seed.x", "seed is a value, not a section"),
        (
            ["--data.batch-size", "8", "--set", "data.batch_size=4"],
            "data.batch_size",
            "given twice",
        ),
        (["--data.batch-size", "eight"], "data.batch_size", "received 'eight' (str)"),
        (["--recipe", "text"], "recipe", "Did you mean 'text_classification'?"),
    ],
)
def test_bad_flags(argv, key, text):
    with pytest.raises(ConfigError) as info:
        parse(*argv)
    assert str(info.value).startswith(f"{key}: ")
    assert text in str(info.value)


def test_yaml_structure_errors_name_the_file(tmp_path):
    path = write(tmp_path, "train:\n  head_epoch: 2\n")
    with pytest.raises(ConfigError, match=rf"^train.head_epoch: unknown key.*\(in {path}\)"):
        parse("--config", path)


# === Validation: one message with the key and the fix ===

BAD = {
    "unknown key": ({"train": {"head_epoch": 2}}, "train.head_epoch", "'head_epochs'"),
    "key in the wrong section": (
        {"data": {"finetune_epochs": 2}},
        "data.finetune_epochs",
        "Did you mean 'train.finetune_epochs'?",
    ),
    "unknown section": ({"trian": {}}, "trian", "Did you mean 'train'?"),
    "section not a mapping": ({"train": 3}, "train", "Write it as a mapping"),
    "string for an int": (
        {"data": {"batch_size": "32"}},
        "data.batch_size",
        "received '32' (str); expected a positive integer. Use e.g. data.batch_size: 32.",
    ),
    "batch size 0": ({"data": {"batch_size": 0}}, "data.batch_size", "expected a positive"),
    "negative epochs": (
        {"train": {"head_epochs": -1}},
        "train.head_epochs",
        "expected an integer >= 0",
    ),
    "float epochs": ({"train": {"finetune_epochs": 2.5}}, "train.finetune_epochs", ">= 0"),
    "bool for an int": ({"seed": True}, "seed", "received true"),
    "both epochs 0": (
        {"train": {"head_epochs": 0, "finetune_epochs": 0}},
        "train.head_epochs",
        "nothing would train. Set at least one",
    ),
    "unknown recipe": ({"recipe": "multi_task"}, "recipe", "Did you mean 'multitask'?"),
    "unknown source": ({"data": {"source": "tfsd"}}, "data.source", "Did you mean 'tfds'?"),
    "unknown head": (
        {"model": {"head": "clasification"}},
        "model.head",
        "expected one of 'classification', 'mlp', 'multilabel', 'regression', 'svm'",
    ),
    "feature extraction head": (
        {"recipe": "feature_extraction", "model": {"head": "mlp"}},
        "model.head",
        "expected one of 'svm', 'logistic'",
    ),
    "unknown schedule": (
        {"train": {"schedule": "two-phase"}},
        "train.schedule",
        "Did you mean 'two_phase'?",
    ),
    "unknown resize": ({"data": {"resize": "cropp"}}, "data.resize", "'crop', 'resize', 'pad'"),
    "unknown augment": (
        {"data": {"augment": ["flip", "rotate"]}},
        "data.augment[1]",
        "Did you mean 'rotation'?",
    ),
    "unknown optimizer": ({"train": {"optimizer": "adamx"}}, "train.optimizer", "'adamax'"),
    "unknown base": (
        {"model": {"base": "mobilenet_v2_torchvison"}},
        "model.base",
        "Did you mean 'mobilenet_v2_torchvision'",
    ),
    "image size below the family minimum": (
        {"model": {"base": "inception_v3"}, "data": {"image_size": 64}},
        "data.image_size",
        "'inception_v3' needs height and width of at least 75 (received 64). Raise "
        "data.image_size to at least that",
    ),
    "augmentation with cache true": (
        {"data": {"augment": ["flip"]}, "train": {"cache": True}},
        "train.cache",
        "freeze one random draw. Use train.cache: auto or false",
    ),
    "mixup with cache true": (
        {"data": {"mixup": 0.2}, "train": {"cache": True}},
        "train.cache",
        "would freeze one random draw",
    ),
    "mixup with a regression head": (
        {"data": {"mixup": 0.2}, "model": {"head": "regression"}},
        "data.mixup",
        "Set data.mixup: 0",
    ),
    "unknown cache": ({"train": {"cache": "disk"}}, "train.cache", "'auto', 'memory', true, false"),
    "splits do not sum to 1": (
        {"data": {"splits": [0.8, 0.1, 0.05]}},
        "data.splits",
        "(sum 0.95); expected non-negative fractions",
    ),
    "negative split": (
        {"data": {"splits": [1.1, -0.1, 0.0]}},
        "data.splits[1]",
        "expected a number >= 0",
    ),
    "two splits": ({"data": {"splits": [0.9, 0.1]}}, "data.splits", "expected three fractions"),
    "unknown max_per_class split": (
        {"data": {"max_per_class": {"val": 5}}},
        "data.max_per_class.val",
        "Did you mean 'validation'?",
    ),
    "folder that does not exist": (
        {"data": {"source": "folder", "path": "/no/such/folder"}},
        "data.path",
        "the folder '/no/such/folder' does not exist. Pass an existing folder",
    ),
    "folder source without a path": (
        {"data": {"source": "folder"}},
        "data.path",
        "source folder needs a path",
    ),
    "csv that does not exist": (
        {"recipe": "text_classification", "data": {"source": "csv", "path": "/no/x.csv"}},
        "data.path",
        "the file '/no/x.csv' does not exist. Pass an existing .csv file",
    ),
    "path with tfds": ({"data": {"path": "x"}}, "data.path", "Remove data.path"),
    "text recipe with an image base": (
        {"recipe": "text_classification", "model": {"base": "resnet50"}},
        "model.base",
        "'resnet50' is an image base, but text_classification needs a text preset",
    ),
    "image recipe with a text preset": (
        {"model": {"base": MINILM}},
        "model.base",
        "is a text preset, but image_classification needs an image base",
    ),
    "unknown text preset": (
        {"recipe": "text_classification", "model": {"base": "bert_tiny_en_uncase"}},
        "model.base",
        "Did you mean 'bert_tiny_en_uncased'",
    ),
    "text recipe reading image folders": (
        {"recipe": "text_classification", "data": {"source": "folder"}},
        "data.source",
        "Use data.source: csv or jsonl",
    ),
    "image recipe reading csv": (
        {"data": {"source": "csv"}},
        "data.source",
        "Use recipe: text_classification",
    ),
    "text recipe with augmentation": (
        {"recipe": "text_classification", "data": {"augment": ["flip"]}},
        "data.augment",
        "for images",
    ),
    "text recipe with imagenet weights": (
        {"recipe": "text_classification", "model": {"weights": "imagenet"}},
        "model.weights",
        "Use model.weights: pretrained",
    ),
    "fusion with one base": (
        {"recipe": "feature_fusion", "model": {"base": "resnet50"}},
        "model.base",
        "feature_fusion fuses exactly two bases, received 1",
    ),
    "fusion with three bases": (
        {"recipe": "feature_fusion", "model": {"base": ["resnet50", "vgg16", "xception"]}},
        "model.base",
        "received 3",
    ),
    # two bases without fusion are candidates to rank (tfl rank, model.base: auto): each named
    "a bad candidate": (
        {"model": {"base": ["resnet50", "vgg61"]}},
        "model.base[1]",
        "unknown image base 'vgg61'. Did you mean",
    ),
    "a cut that is no block group": (
        {"model": {"base": "resnet50", "cut": "stage5"}},
        "model.cut",
        "its groups: stem, stage1, stage2, stage3, stage4",
    ),
    "fusion add with unequal widths": (
        {
            "recipe": "feature_fusion",
            "model": {"base": ["mobilenet_v2_torchvision", "resnet50"], "fusion": "add"},
        },
        "model.fusion",
        "needs equal feature sizes; the bases give [1280, 2048]. Use model.fusion: concat or "
        "projection",
    ),
    "multitask without tasks": (
        {"recipe": "multitask", "model": {"tasks": {}}},
        "model.tasks",
        "multitask needs at least one task",
    ),
    "unknown derived label": (
        {"recipe": "multitask", "model": {"tasks": {"p": {"label_column": "label:parit"}}}},
        "model.tasks.p.label_column",
        "Did you mean 'parity'?",
    ),
    "unknown task key": (
        {"recipe": "multitask", "model": {"tasks": {"p": {"heads": "mlp"}}}},
        "model.tasks.p.heads",
        "Did you mean 'head'?",
    ),
    "tasks without multitask": (
        {"model": {"tasks": {"p": {}}}},
        "model.tasks",
        "use recipe: multitask",
    ),
    "label smoothing 1": (
        {"train": {"label_smoothing": 1.0}},
        "train.label_smoothing",
        "expected a number in [0, 1)",
    ),
    "negative label smoothing": (
        {"train": {"label_smoothing": -0.1}},
        "train.label_smoothing",
        "in [0, 1)",
    ),
    "label smoothing with an svm head": (
        {"train": {"label_smoothing": 0.1}, "model": {"head": "svm"}},
        "train.label_smoothing",
        "no class probabilities",
    ),
    "weights file missing": (
        {"model": {"weights": "/no/base.weights.h5"}},
        "model.weights",
        "the weights file '/no/base.weights.h5' does not exist",
    ),
    "misspelt weights": ({"model": {"weights": "imagnet"}}, "model.weights", "'imagenet'"),
    "feature_extraction schedule with fine-tuning epochs": (
        {"train": {"schedule": "feature_extraction"}},
        "train.finetune_epochs",
        "Set train.finetune_epochs: 0",
    ),
    "feature_extraction recipe that fine-tunes": (
        {"recipe": "feature_extraction", "train": {"schedule": "two_phase"}},
        "train.schedule",
        "never trains the base",
    ),
    "partial without a number": (
        {"train": {"schedule": "partial"}},
        "train.unfreeze",
        "Use an integer",
    ),
    "unfreeze 0": ({"train": {"unfreeze": 0}}, "train.unfreeze", "expected a positive integer"),
    "zero learning rate": (
        {"train": {"head_learning_rate": 0}},
        "train.head_learning_rate",
        "expected a number > 0",
    ),
    "layer decay above 1": (
        {"train": {"layer_decay": 1.5}},
        "train.layer_decay",
        "in (0, 1] or null",
    ),
    "sequence length for images": (
        {"data": {"sequence_length": 128}},
        "data.sequence_length",
        "has no texts",
    ),
    "bad sequence length": (
        {"recipe": "text_classification", "data": {"sequence_length": "long"}},
        "data.sequence_length",
        "expected auto or an integer >= 3",
    ),
    "top_k 0": ({"evaluate": {"top_k": 0}}, "evaluate.top_k", "expected a positive integer"),
}


@pytest.mark.parametrize("tree, key, text", BAD.values(), ids=BAD.keys())
def test_bad_config_gives_one_message_with_key_and_fix(tree, key, text):
    error = error_of(tree)
    assert isinstance(error, ValueError)
    assert error.key == key
    assert str(error).startswith(f"{key}: ")
    assert text in str(error)
    assert error.fix and str(error).endswith(error.fix)


def test_existing_paths_validate_and_name_the_run(tmp_path):
    folder = tmp_path / "flowers"
    (folder / "rose").mkdir(parents=True)
    weights = write(tmp_path, "", "base.weights.h5")
    config = validate(
        from_dict(
            {"data": {"source": "folder", "path": str(folder)}, "model": {"weights": weights}}
        )
    )
    assert config.name == "image_classification-flowers"
    assert config.model.weights == weights
    assert cfg.run_dir(config, now=0.0).startswith("runs/image_classification-flowers-")
    assert cfg.run_dir(dataclasses.replace(config, output="out")) == "out"
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        validate(from_dict({"data": {"source": "folder", "path": weights}}))


def test_validate_normalises():
    config = validate(
        from_dict(
            {
                "model": {"weights": "pretrained", "head": "SVM"},
                "data": {"augment": "flip"},
                "train": {"unfreeze": "stage4", "head_learning_rate": "3e-4"},
            }
        )
    )
    assert config.model.weights == "imagenet" and config.model.head == "svm"
    assert config.data.augment == ("flip",)
    assert config.train.unfreeze == ("stage4",)
    assert config.train.head_learning_rate == pytest.approx(3e-4)


def test_encoding_settings_reach_the_text_loaders(tmp_path):
    """A Latin-1 CSV: refused before any work by default, read with data.encoding, its bad row
    skipped into bad_inputs.txt with data.encoding_errors: skip."""
    from tfl import builders

    latin1 = tmp_path / "reviews.csv"
    latin1.write_bytes("text,label\nfun,pos\ncafé crème,pos\ndull,neg\n".encode("latin-1"))
    data = {"source": "csv", "path": str(latin1), "max_per_class": None, "splits": [1, 0, 0]}
    tree = {"recipe": "text_classification", "data": data}
    with pytest.raises(ConfigError, match=r"data.encoding: .*reviews.csv row 3 is not utf-8"):
        validate(from_dict(tree))
    read = validate(from_dict({**tree, "data": {**data, "encoding": "latin-1"}}))
    texts = [t.decode() for x, _ in builders.load_data(read).train for t in x.numpy()]
    assert sorted(texts) == ["café crème", "dull", "fun"]
    skip = validate(from_dict({**tree, "data": {**data, "encoding_errors": "skip"}}))
    run_dir = tmp_path / "run"
    with pytest.warns(UserWarning, match="1 of 3 rows were skipped"):
        skipped = builders.load_data(skip, run_dir=str(run_dir))
    assert skipped.info["num_examples"] == {"train": 2}
    lines = (run_dir / "bad_inputs.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{latin1} row 3\tbytes that are not utf-8 text"]
    with pytest.raises(ConfigError, match="data.encoding: data.source tfds reads no CSV"):
        validate(from_dict({"data": {"encoding": "latin-1"}}))
