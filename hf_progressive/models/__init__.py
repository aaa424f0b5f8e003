"""Model classes, one folder per architecture (`llama/`, `mistral/`, `qwen2/`, `qwen3/`): transformers' own config and
causal LM classes with a `from_smaller` constructor (`progressive.py`, shared by all), thin shells around
`hf_progressive.expansion`."""
