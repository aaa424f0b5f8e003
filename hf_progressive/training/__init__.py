"""One stage of training: `ProgressiveTrainer` and its arguments (`trainer`), the arguments a stage derives from a
recipe (`stage_args`), `GrownAdamW` for carried optimizer state (`optim`) and frozen/LoRA stages (`peft_stage`)."""
