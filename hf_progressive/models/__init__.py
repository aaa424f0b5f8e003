"""Model classes, one folder per architecture (`llama/`): configuration and modeling with a `from_smaller`
constructor, thin shells around `hf_progressive.expansion`."""
