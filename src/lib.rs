//! The donation ledger service.
