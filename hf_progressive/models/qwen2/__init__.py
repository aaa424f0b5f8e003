"""`ProgressiveQwen2Config` and `ProgressiveQwen2ForCausalLM`: transformers' Qwen2 classes with `from_smaller`; what
they save stays a vanilla Qwen2 checkpoint."""
