#!/usr/bin/env python3
"""Records what transformers' AutoTokenizer does with tokenizer_config.json's add_bos_token /
add_eos_token / tokenizer_class next to a tokenizer.json (test/fixtures/data/tokenizer_flags.json).

    python3 -m venv /tmp/venv-tok && /tmp/venv-tok/bin/pip install transformers tokenizers
    /tmp/venv-tok/bin/python scripts/make-tokenizer-flag-fixtures.py

Each variant is test/fixtures/data/llama_tok with some tokenizer_config.json keys changed and,
optionally, the tokenizer.json post-processor removed; its ids are AutoTokenizer's `input_ids`
for a few texts. transformers 5 reads the special tokens a sequence gets from tokenizer.json's
post-processor when the file exists and drops add_bos_token / add_eos_token from the config
(tokenization_utils_base.py, `_from_pretrained`).
"""
import json
import os
import tempfile

import transformers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "test", "fixtures", "data", "llama_tok")
OUT = os.path.join(HERE, "..", "test", "fixtures", "data", "tokenizer_flags.json")

TEXTS = ["Hello world. The quick brown fox jumps over the lazy dog; 12345!", "a", " two  spaces\nand a line"]
VARIANTS = {
    "llama_add_bos_false": ({"add_bos_token": False}, True),
    "llama_add_eos_true": ({"add_eos_token": True}, True),
    "fast_add_bos_false": ({"add_bos_token": False, "tokenizer_class": "PreTrainedTokenizerFast"}, True),
    "fast_no_post_processor_add_bos_true": ({"add_bos_token": True, "tokenizer_class": "PreTrainedTokenizerFast"}, False),
    "fast_no_post_processor_add_eos_true": ({"add_eos_token": True, "tokenizer_class": "PreTrainedTokenizerFast"}, False),
    "llama_no_post_processor": ({}, False),
}


def main():
    with open(os.path.join(SRC, "tokenizer.json")) as f:
        tokenizer_json = json.load(f)
    with open(os.path.join(SRC, "tokenizer_config.json")) as f:
        config = json.load(f)
    out = {"transformers": transformers.__version__, "texts": TEXTS, "variants": {}}
    for name, (extra, keep_post_processor) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as d:
            cfg = {**config, **extra}
            tj = dict(tokenizer_json)
            if not keep_post_processor:
                tj["post_processor"] = None
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(cfg, f)
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                json.dump(tj, f)
            tok = AutoTokenizer.from_pretrained(d)
            out["variants"][name] = {
                "config": extra,
                "post_processor": keep_post_processor,
                "class": type(tok).__name__,
                "ids": [tok(t)["input_ids"] for t in TEXTS],
            }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
