//! What the host knows about the backlog tool: its REST routes, its review page (`/ui`) and
//! the hints its write actions give MCP clients. Everything else of the host serves any tool plugin unchanged.

pub mod mcp_hints;
pub mod routes;
pub mod ui;
