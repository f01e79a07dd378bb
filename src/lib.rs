//! # The donation ledger service
//!
//! Storage backends behind one [`store::EventLog`] trait, the single writer that turns
//! commands into sealed events ([`writer`]), the projection runner ([`projector`]), the
//! transparency log (persisted Merkle tree in [`store::merkle`], checkpoints, tiles, proofs
//! and the verifier in [`tlog`]), and the CLI. The domain lives in the `events` and `projections` crates; this crate does the IO.

pub mod cli;
pub mod command;
pub mod demo;
pub mod finance_cli;
pub mod http;
pub mod metrics;
pub mod node;
pub mod projector;
pub mod reports;
pub mod sealer;
pub mod statement;
pub mod store;
pub mod tlog;
pub mod views;
pub mod web;
pub mod writer;
