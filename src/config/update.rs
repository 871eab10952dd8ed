//! `[update]`: signed A/B software updates (`understudy update`, docs/operations.md).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where updates are installed, whom they must be signed by, and how the
/// appliance is restarted onto them (`[update]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// The two install slots (`a/`, `b/`) and the `active` and `previous`
    /// links. A fixed place, so that the service and an administrator's shell
    /// find the same slots whatever their environment.
    pub slots_dir: PathBuf,
    /// Public keys (minisign `.pub` files) an update bundle must be signed by.
    pub keys_dir: PathBuf,
    /// The command that restarts the appliance onto the active slot.
    pub restart_command: Vec<String>,
    /// Seconds the new version has to answer `/readyz` after its restart
    /// before the update is rolled back.
    pub ready_timeout_s: u64,
    /// Seconds to wait for calls in progress to end (new calls are refused
    /// meanwhile) before the appliance restarts anyway.
    pub drain_timeout_s: u64,
    /// Starts a switched-to version gets to be ready (each within
    /// `ready_timeout_s`) when `update apply` is no longer watching it (the
    /// box lost power); then the version before runs again.
    pub trial_starts: u32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            slots_dir: PathBuf::from("/var/lib/understudy/slots"),
            keys_dir: PathBuf::from("/etc/understudy/keys"),
            restart_command: ["systemctl", "restart", "understudy"]
                .map(String::from)
                .to_vec(),
            ready_timeout_s: 300,
            drain_timeout_s: 300,
            trial_starts: 3,
        }
    }
}
