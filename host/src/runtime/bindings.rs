//! Host bindings of the generic tool world (`backlog-bridge:tool/plugin`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "backlog-bridge:tool/plugin@0.1.0",
});

pub use self::backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError as WitToolError};
