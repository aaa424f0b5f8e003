"""Everything between a corpus and the token blocks a stage reads: the typed data and tokenizer spec (`spec`), the
documents of a corpus (`documents`), the tokenizer (`tokenizer`), the token store on disk (`token_store`, written
through `token_stream` by `tokenize_worker` processes) and block windows (`blocks`). This `__init__` imports nothing,
so a tokenizer worker stays light."""
