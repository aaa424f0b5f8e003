"""`ProgressiveLlamaConfig` and `ProgressiveLlamaForCausalLM`: transformers' Llama classes with `from_smaller`; what
they save stays a vanilla Llama checkpoint."""
