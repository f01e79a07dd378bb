//! Pure folds over the ledger's events.
