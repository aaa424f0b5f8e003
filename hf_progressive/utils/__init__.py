"""Small helpers every part may use, below the expansion math: reading a YAML value as a dataclass field's type
(`coerce`), the one rule for replacing a folder a user named, with its per-folder lock (`guard`), durable JSON
writes with storage errors worded by cause (`io`), and slow steps overlapped on a few threads with bounded memory
(`overlap`). Standard library only."""
