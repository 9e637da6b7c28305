"""The settings of fine-tuning under shift: bad values stop `tfl` before any work (exit 2)."""

import pytest

from tfl import cli
from tfl import config as config_lib

TEXT = ["--recipe", "text_classification"]
BAD = {
    "wise out of range": (["--train.wise", "2"], "train.wise: received 2; expected auto, null"),
    "wise a word": (["--train.wise", "best"], "train.wise: received 'best'"),
    "wise without fine-tuning": (
        ["--recipe", "feature_extraction", "--train.wise", "auto"],
        "train.wise: received 'auto', but this run never fine-tunes the base",
    ),
    "wise without a probe": (
        ["--train.head-epochs", "0", "--train.wise", "0.5"],
        "train.wise: received 0.5 with train.head_epochs 0",
    ),
    "ema of 1": (["--train.ema", "1"], "train.ema: received 1; expected a number in (0, 1)"),
    "peft unknown": (["--train.peft", "qlora"], "train.peft: received 'qlora'"),
    "lora on random weights": (
        ["--model.weights", "none", "--train.peft", "lora"],
        "train.peft: received 'lora' with model.weights none",
    ),
    "lora without fine-tuning": (
        ["--recipe", "feature_extraction", "--train.peft", "lora"],
        "train.peft: received 'lora', but schedule feature_extraction never trains the base",
    ),
    "rank 0": (["--train.lora-rank", "0"], "train.lora_rank: received 0"),
    "calibrate a word": (["--evaluate.calibrate", "maybe"], "evaluate.calibrate: received"),
    "tta unknown": (["--evaluate.tta", "zoom"], "evaluate.tta[0]: received 'zoom'"),
    "tta on text": (
        [*TEXT, "--evaluate.tta", "flip"],
        "evaluate.tta: test-time augmentation (flips, crops) is for images",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_values_exit_2_naming_the_key(case, tmp_path, capsys):
    argv, message = BAD[case]
    out = tmp_path / "out"
    assert cli.main(["train", *argv, "--output", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"tfl train: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cv", "--train.wise", "auto"], "train.wise: tfl cv cannot choose alpha (auto)"),
        (["compare", "--train.ema", "0.9"], "train.ema: tfl compare trains scratch, probe"),
        (["compare", "--train.peft", "lora"], "train.peft: tfl compare trains scratch, probe"),
    ],
)
def test_studies_refuse_what_their_folds_cannot_do(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*argv, "--output", str(out)]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_good_values_are_normalised():
    config = config_lib.validate(
        config_lib.from_dict(
            {
                "train": {"wise": "AUTO", "ema": "0.99", "peft": "LoRA", "lora_rank": 4},
                "evaluate": {"tta": "crops", "calibrate": False},
            }
        )
    )
    t, e = config.train, config.evaluate
    assert (t.wise, t.ema, t.peft, t.lora_rank) == ("auto", 0.99, "lora", 4)
    assert (e.tta, e.calibrate) == (("crops",), False)
    assert config_lib.validate(config) == config  # validating twice changes nothing
