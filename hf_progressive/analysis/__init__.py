"""What a built family is measured by: KL consistency (`consistency`), lm-eval (`evaluation`, with the offline tasks
in `lm_eval_tasks/`), the report and its plots (`report`, `report_text`, `plots`) and `compare` (independent vs
progressive in one report)."""
