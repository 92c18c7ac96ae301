//! Support for the end-to-end benchmarks of the release `rkube` binary: a server process on a
//! fresh data dir and free port ([`server`]), a keep-alive HTTPS client authenticated with the
//! admin certificate ([`client`]) and the small statistics the reports need ([`stats`]).
//!
//! Nothing here builds `rkube`: the benchmarks run `target/release/rkube` as it is.

pub mod client;
pub mod server;
pub mod stats;
