//! Everything the host knows about the backlog store, in one place: which backend and its
//! settings (`settings.rs`), the store's directory, lock, fsync and host-side errors
//! (`store.rs`), its status and the `auto` backend's recovery (`status.rs`), the config
//! document a backlog guest is handed (`guest_config.rs`, built once per caller and grant set:
//! `config_cache.rs`), the overdue gauges of `/metrics`
//! (`gauges.rs`), `migrate` (`migrate.rs`), its REST routes (`routes.rs`), its review page
//! `/ui` (`ui.rs`) and the hints its write actions give MCP clients (`mcp_hints.rs`). The
//! rest of the host is a generic tool runtime: it knows tools only through `describe`/`call`.

pub(crate) mod config_cache;
pub mod gauges;
pub mod guest_config;
pub mod mcp_hints;
pub mod migrate;
pub mod routes;
pub mod settings;
pub mod status;
pub mod store;
pub mod ui;

pub use settings::{Backend, Settings};
pub use status::{RECOVERY_AGENT, StoreStatus, spawn_store_recovery};
