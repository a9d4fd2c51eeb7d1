#!/usr/bin/env python3
"""Tokens/s of a full fine-tuning training step of the embedded default model
in PyTorch on this machine, for comparison with `apex train`'s reported
`tok/s` (same sizes: d=128, N=352, H=4, H_kv=2, L=4, V=256, untied head;
batch 8 x 128 tokens; AdamW betas (0.9, 0.95), clip 1.0; fp32 eager).

    python tools/torch_step_bench.py [--threads 2] [--steps 30]
"""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).float().train()
    model.config._attn_implementation = "eager"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    x = torch.randint(0, 256, (args.batch, args.seq_len))
    times = []
    for step in range(args.steps + 5):
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 5:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(f"torch {torch.__version__}, {args.threads} threads: median step {median*1000:.1f} ms, "
          f"{args.batch * args.seq_len / median:.0f} tokens/s")


if __name__ == "__main__":
    main()
