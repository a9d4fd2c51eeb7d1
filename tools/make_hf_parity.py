#!/usr/bin/env python3
"""Builds tests/fixtures/hf-tiny: a tiny random LlamaForCausalLM checkpoint, its
tokenizer, a text file, and the mean next-token cross-entropy that HF
transformers computes on it (the reference that `apex eval` must match).

Run once with torch, transformers and tokenizers installed:
    python tools/make_hf_parity.py
The outputs are committed; the Rust tests need no Python.

The checkpoint exercises the config variants current HF models use: GQA
(4 query heads, 2 KV heads), an explicit head_dim, rope_theta nested under
rope_parameters, and tied embeddings (no lm_head.weight tensor). Weights are
drawn with a larger std than HF's default and the RMSNorm weights are random,
so the logits are far from uniform and a wrong op cannot hide.
"""
import json
import math
import os
import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf-tiny")
SEQ_LEN = 32
SEED = 1234


def make_text(rng: random.Random) -> str:
    """A few hundred words of seeded pseudo-English."""
    subjects = ["the cat", "a dog", "my friend", "the river", "an old man", "the wind"]
    verbs = ["sees", "follows", "remembers", "carries", "finds", "hears"]
    objects = ["the hill", "a small boat", "the red door", "some bread", "the moon"]
    tails = ["at night", "in spring", "without a sound", "again and again", "slowly"]
    lines = []
    for _ in range(60):
        words = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects)]
        if rng.random() < 0.6:
            words.append(rng.choice(tails))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ","]))
    return "\n".join(" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)) + "\n"


def main() -> None:
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    text = make_text(rng)
    with open(os.path.join(OUT, "text.txt"), "w") as f:
        f.write(text)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<s>", "</s>"],
    )
    tok.train_from_iterator([text], trainer)
    tok.save(os.path.join(OUT, "tokenizer.json"))

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model.save_pretrained(OUT, safe_serialization=True)

    ids = tok.encode(text, add_special_tokens=False).ids
    windows = [ids[i : i + SEQ_LEN] for i in range(0, len(ids) - SEQ_LEN + 1, SEQ_LEN)]
    losses = []
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            losses.append(model(input_ids=x, labels=x).loss.item())
    mean = sum(losses) / len(losses)
    expected = {
        "seq_len": SEQ_LEN,
        "tokens": len(ids),
        "windows": len(windows),
        "mean_cross_entropy": mean,
        "perplexity": math.exp(mean),
        "window_losses": losses,
        "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
    print(json.dumps({k: v for k, v in expected.items() if k != "window_losses"}, indent=2))


if __name__ == "__main__":
    main()
