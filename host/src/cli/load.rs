//! Loading the bridge for a command that names its agent.

use backlog_bridge::{Bridge, Settings};

use crate::exit::Failure;

/// Loads the bridge and checks that `agent` exists (an unknown agent is a usage error).
pub(super) fn load(settings: Settings, agent: &str) -> Result<Bridge, Failure> {
    let bridge = Bridge::load(settings).map_err(Failure::Config)?;
    if bridge.matrix.agent(agent).is_none() {
        return Err(Failure::Config(anyhow::anyhow!(
            "unknown agent `{agent}` (agents are defined in {})",
            bridge.matrix.path.display()
        )));
    }
    Ok(bridge)
}
