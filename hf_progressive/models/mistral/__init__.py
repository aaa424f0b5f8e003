"""`ProgressiveMistralConfig` and `ProgressiveMistralForCausalLM`: transformers' Mistral classes with `from_smaller`;
what they save stays a vanilla Mistral checkpoint."""
