"""Small helpers every part may use, below the expansion math: reading a YAML value as a dataclass field's type
(`coerce`) and the one rule for replacing a folder a user named, with its per-folder lock (`guard`)."""
