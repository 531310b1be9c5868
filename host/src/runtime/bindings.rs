//! Host bindings of the two worlds guests run in, sharing one linker (`sandbox::link_all`):
//! - the tool world every tool plugin runs in: it exports the generic tool face
//!   (`backlog-bridge:tool/tool`) and may import the host's Postgres access
//!   (`backlog-bridge:pg/postgres`) and the store directory's lock on demand
//!   (`backlog-bridge:store/dir-lock`). Components that do not import Postgres link all the
//!   same. The world is declared here (the WIT files stay the guests' contract).
//! - [`scheduler`]: the scheduler component's world: it imports the tool invoker and exports
//!   the job runner. Its `backlog-bridge:tool/types` are the tool world's.

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package backlog-bridge:host@0.1.0;

        world tool-host {
            import backlog-bridge:pg/postgres@0.1.0;
            import backlog-bridge:store/dir-lock@0.1.0;
            export backlog-bridge:tool/tool@0.2.0;
        }
    ",
    world: "backlog-bridge:host/tool-host@0.1.0",
    // A statement still running when the call's time limit passes ends the call with a trap
    // (-> `timeout`), like a guest that runs too long.
    imports: { "backlog-bridge:pg/postgres.execute": trappable },
});

pub use self::backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError as WitToolError};

/// The Postgres interface's types and `Host` trait.
pub mod pg {
    pub use super::backlog_bridge::pg::postgres::*;
}

/// The store directory lock's `Host` trait.
pub mod store_lock {
    pub use super::backlog_bridge::store::dir_lock::*;
}

/// The scheduler component's world (`backlog-bridge:scheduler/scheduler-runner`).
pub mod scheduler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backlog-bridge:scheduler/scheduler-runner@0.1.0",
        with: {
            "backlog-bridge:tool/types": crate::runtime::bindings::backlog_bridge::tool::types,
        },
    });
}
