"""`ProgressiveQwen3Config` and `ProgressiveQwen3ForCausalLM`: transformers' Qwen3 classes with `from_smaller`; what
they save stays a vanilla Qwen3 checkpoint."""
