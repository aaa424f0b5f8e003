"""Publishing a family: member and family cards rendered from the ledger (`cards`, templates in `model_cards/`) and
the pushes (`publish`)."""
