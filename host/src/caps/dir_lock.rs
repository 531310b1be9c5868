//! The store directory's writer lock on demand (`backlog-bridge:store/dir-lock`): for a call
//! of the `auto` backend, which needs the JSONL directory only when Postgres is down or an
//! outage journal waits to be replayed. The host takes the lock before the guest runs for
//! every other write-capable call (`backlog/store.rs`, `prepare`).
//!
//! Why on demand: holding the directory's lock through a whole Postgres transaction made every
//! auto writer of a host wait for every other, for a directory none of them touched.
//!
//! Lock order: an auto call asks for the lock before its first statement (Postgres does not
//! answer, or an outage is on record) or after Postgres failed with `unavailable` (then its
//! session is normally gone, and its row locks with it). So a call waiting here holds no row
//! lock that the lock's holder (say, a call replaying the outage journal into Postgres) could
//! be waiting for; in the one odd case left (a table dropped under a running call, whose
//! aborted transaction keeps its row locks until the host rolls it back) the holder's
//! statement timeout ends the wait.
//!
//! Must not: lock anything but the directory the call was granted read-write, or keep the
//! lock past the call (the pipeline takes it out after the guest returns, makes the writes
//! durable under it, then drops it).

use std::path::PathBuf;

use wasmtime::component::{HasData, Linker};

use crate::lock::DirLock;
use crate::runtime::bindings::store_lock as wit;

/// One store's lock grant: the directory this call may lock (none: the call may not, or the
/// host already holds it), and the lock once taken.
#[derive(Default)]
pub struct DirLockGrant {
    dir: Option<PathBuf>,
    held: Option<DirLock>,
}

impl DirLockGrant {
    /// Starts a call that may lock `dir` on demand.
    pub fn begin_call(&mut self, dir: Option<PathBuf>) {
        self.dir = dir;
        self.held = None;
    }

    /// Ends the call: the lock, if the guest took it (the caller drops it once the call's
    /// writes are durable).
    pub fn take(&mut self) -> Option<DirLock> {
        self.dir = None;
        self.held.take()
    }
}

/// The capability as the linker sees it.
pub struct DirLocking;

impl HasData for DirLocking {
    type Data<'a> = &'a mut DirLockGrant;
}

/// Links `backlog-bridge:store/dir-lock` for stores whose state holds a [`DirLockGrant`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut DirLockGrant,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, DirLocking>(linker, project)
}

impl wit::Host for DirLockGrant {
    fn acquire(&mut self) -> Result<(), String> {
        if self.held.is_some() {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Err(
                "this call may not lock the store directory (no write grant, or the host holds the lock)"
                    .into(),
            );
        };
        // The guest knows the directory by its guest path only; so does this message.
        let lock = DirLock::acquire(dir).map_err(|e| {
            tracing::warn!(error = %e, "cannot lock the store directory");
            "cannot lock the store directory (see the host's log)".to_owned()
        })?;
        self.held = Some(lock);
        Ok(())
    }
}
