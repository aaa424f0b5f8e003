"""Math on state dicts and checkpoint surgery, the core every other part builds on: tensor facts of a Llama (`keys`),
the operators by name (`methods`), the size arithmetic of a growth (`sizes`), resolved plans (`plan`), the operators
and optimizer-moment carry (`operators`), streaming expansion of sharded checkpoints (`streaming`), preservation
checks in memory (`verification`) and one layer at a time (`layerwise`), the options of a growth (`arguments`),
`grow_checkpoint` end to end (`grow`), growth.json (`record`) and checkpoint I/O (`checkpoint`). No trainer, no
recipe."""
