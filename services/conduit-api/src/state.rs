//! The state every handler and middleware shares: handles and configuration, never client data.

use std::sync::Arc;

use crate::auth::{KeyRing, Passwords};
use crate::config::Config;
use crate::routes::Draining;
use crate::store::Store;

/// Everything a handler may use. It holds handles and configuration, never client data. Each
/// worker has its own, with its own Redis connection; the rest is shared or copied.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// The signing keys that issue and verify tokens.
    pub key_ring: Arc<KeyRing>,
    pub passwords: Arc<Passwords>,
    pub replica_id: String,
    pub draining: Draining,
}
