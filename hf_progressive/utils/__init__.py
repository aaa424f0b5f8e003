"""Small helpers every part may use, below the expansion math: reading a YAML value as a dataclass field's type
(`coerce`), the one rule for replacing a folder a user named, with its per-folder lock (`guard`), and durable JSON
writes with storage errors worded by cause (`io`). Standard library only."""
