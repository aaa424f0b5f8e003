"""A model family from recipe to ledger: the recipe and what its YAML says (`recipe`, `recipe_text`), member shapes
(`shapes`), budgets and FLOPs (`budget`), the resolved plan (`family_plan`), the token store a family trains on
(`store`), a pretrained first member (`pretrained`), the build loop (`builder`), what a build prints (`console`)
and OUT's layout and family.json (`ledger`)."""
