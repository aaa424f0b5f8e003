"""Math on state dicts and checkpoint surgery, the core every other part builds on: tensor facts of a Llama (`keys`),
the size arithmetic of a growth (`sizes`), resolved plans (`plan`), the operators and optimizer-moment carry
(`operators`), streaming expansion of sharded checkpoints (`streaming`), preservation checks (`verification`),
`grow_checkpoint` end to end (`grow`), growth.json (`record`) and checkpoint I/O (`checkpoint`). No trainer, no
recipe."""
