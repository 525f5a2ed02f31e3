#!/usr/bin/env python3
"""Records the ids transformers' AutoTokenizer gives for tokenizer folders whose tokenizer.json,
tokenizer_config.json and config.json disagree (test/fixtures/data/autotokenizer.json).

    python3 -m venv /tmp/venv-tok && /tmp/venv-tok/bin/pip install transformers tokenizers
    /tmp/venv-tok/bin/python scripts/make-autotokenizer-fixtures.py

Each variant starts from one of the two data-fixture tokenizers (test/fixtures/data: GPT-2 style
byte-level BPE; llama_tok: Metaspace BPE with a BOS post-processor), changes tokenizer_config.json
keys, optionally drops the tokenizer.json post-processor, and optionally adds a config.json with a
model_type. What transformers 5 does with them (transformers/models/auto/tokenization_auto.py,
tokenization_utils_tokenizers.py):
  - add_bos_token / add_eos_token in tokenizer_config.json are dropped when a tokenizer.json
    exists: the post-processor in tokenizer.json decides the special tokens;
  - for a model_type in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS (of ours: qwen2), or a
    tokenizer_class naming it, the registered class is used; Qwen2Tokenizer rebuilds the
    normalizer (NFC) and the pre-tokenizer (Qwen's split regex, then byte-level) around
    tokenizer.json's vocabulary and merges.
"""
import json
import os
import tempfile

import transformers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "test", "fixtures", "data")
OUT = os.path.join(DATA, "autotokenizer.json")
BASES = {"gpt2_style": DATA, "llama_style": os.path.join(DATA, "llama_tok")}

TEXTS = [
    "Hello world. The quick brown fox jumps over the lazy dog; 12345!",
    "Version 3, 29 June 2007\n\nCopyright (C) 2007 Free Software Foundation",
    "I'm sure it's THEY'RE we'VE I'LL he'D",
    "  leading spaces   and\ttabs\r\nCRLF lines\n\n\n",
    "caf\u00e9 cafe\u0301 na\u00efve \u00c5ngstr\u00f6m \u4e2d\u6587 \U0001f600 emoji",
    "x=1+2*3; y = [4, 5, 6]; print(f'{x}')",
    "<|endoftext|>text after special<|endoftext|>",
    "numbers 3.14159 and 1,000,000 and 0x1F",
    "a",
    "<s>Hello</s> world <s> again</s>",
    "Hello <unk> world</s>",
]

# name: (base, tokenizer_config overrides, keep the post-processor, config.json model_type or None)
VARIANTS = {
    "llama_add_bos_false": ("llama_style", {"add_bos_token": False}, True, None),
    "llama_add_eos_true": ("llama_style", {"add_eos_token": True}, True, None),
    "fast_add_bos_false": ("llama_style", {"add_bos_token": False, "tokenizer_class": "PreTrainedTokenizerFast"}, True, None),
    "fast_no_post_processor_add_bos_true": ("llama_style", {"add_bos_token": True, "tokenizer_class": "PreTrainedTokenizerFast"}, False, None),
    "fast_no_post_processor_add_eos_true": ("llama_style", {"add_eos_token": True, "tokenizer_class": "PreTrainedTokenizerFast"}, False, None),
    "llama_no_post_processor": ("llama_style", {}, False, None),
    "llama_model_type_llama": ("llama_style", {}, True, "llama"),
    "byte_level_no_model": ("gpt2_style", {}, True, None),
    "byte_level_model_type_gpt2": ("gpt2_style", {}, True, "gpt2"),
    "byte_level_model_type_qwen2": ("gpt2_style", {}, True, "qwen2"),
    "byte_level_model_type_qwen2_no_class": ("gpt2_style", {"tokenizer_class": None}, True, "qwen2"),
    "byte_level_model_type_qwen2_gpt2_class": ("gpt2_style", {"tokenizer_class": "GPT2TokenizerFast"}, True, "qwen2"),
    "byte_level_model_type_qwen2_prefix_space": ("gpt2_style", {"add_prefix_space": True}, True, "qwen2"),
    "byte_level_model_type_qwen2_no_post_processor": ("gpt2_style", {}, False, "qwen2"),
    "byte_level_qwen2_class_no_model": ("gpt2_style", {"tokenizer_class": "Qwen2Tokenizer"}, True, None),
    "byte_level_qwen2_fast_class_model_gpt2": ("gpt2_style", {"tokenizer_class": "Qwen2TokenizerFast"}, True, "gpt2"),
    "byte_level_model_type_gpt_neox": ("gpt2_style", {}, True, "gpt_neox"),
    "byte_level_model_type_gemma": ("gpt2_style", {}, True, "gemma"),
    "byte_level_gpt2_class_model_gpt2": ("gpt2_style", {"tokenizer_class": "GPT2TokenizerFast"}, True, "gpt2"),
    "byte_level_neox_class_model_gpt_neox": ("gpt2_style", {"tokenizer_class": "GPTNeoXTokenizerFast"}, True, "gpt_neox"),
    "byte_level_llama_class_model_llama": ("gpt2_style", {"tokenizer_class": "LlamaTokenizerFast"}, True, "llama"),
    "byte_level_gemma_class_model_gemma": ("gpt2_style", {"tokenizer_class": "GemmaTokenizerFast"}, True, "gemma"),
    "llama_style_gpt2_class_model_gpt2": ("llama_style", {"tokenizer_class": "GPT2TokenizerFast"}, True, "gpt2"),
    "llama_style_model_type_qwen2": ("llama_style", {}, True, "qwen2"),
    "llama_style_legacy_true": ("llama_style", {"legacy": True}, True, None),
    "llama_style_no_prefix_space": ("llama_style", {"add_prefix_space": False}, True, None),
    "byte_level_neox_prefix_space": ("gpt2_style", {"tokenizer_class": "GPTNeoXTokenizerFast", "add_prefix_space": True}, True, "gpt_neox"),
    "byte_level_gpt2_class_prefix_space": ("gpt2_style", {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True}, True, "gpt2"),
    "byte_level_auto_map_qwen2": ("gpt2_style", {"auto_map": {"AutoTokenizer": [None, "tokenization_custom.CustomTokenizer"]}}, True, "qwen2"),
}


def load_json(path):
    with open(path) as f:
        return json.load(f)


def main():
    out = {"transformers": transformers.__version__, "texts": TEXTS, "variants": {}}
    for name, (base, overrides, keep_post_processor, model_type) in VARIANTS.items():
        tokenizer_json = load_json(os.path.join(BASES[base], "tokenizer.json"))
        config = load_json(os.path.join(BASES[base], "tokenizer_config.json"))
        for k, v in overrides.items():
            if v is None:
                config.pop(k, None)
            else:
                config[k] = v
        if not keep_post_processor:
            tokenizer_json["post_processor"] = None
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(config, f)
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                json.dump(tokenizer_json, f)
            if model_type:
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump({"model_type": model_type}, f)
            tok = AutoTokenizer.from_pretrained(d)
            out["variants"][name] = {
                "base": base,
                "tokenizer_config": overrides,
                "post_processor": keep_post_processor,
                "model_type": model_type,
                "class": type(tok).__name__,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "size": len(tok),
                "ids": [tok(t)["input_ids"] for t in TEXTS],
            }
    with open(OUT, "w") as f:
        f.write("{\n")
        f.write(f' "transformers": {json.dumps(out["transformers"])},\n "texts": {json.dumps(TEXTS)},\n "variants": {{\n')
        rows = [f"  {json.dumps(n)}: {json.dumps(v)}" for n, v in out["variants"].items()]
        f.write(",\n".join(rows))
        f.write("\n }\n}\n")


if __name__ == "__main__":
    main()
