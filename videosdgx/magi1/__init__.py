"""MAGI-1 family (Sand AI): 4.5B / 24B, base and distill; autoregressive chunk generation with a KV cache."""
