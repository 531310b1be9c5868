//! Pure scheduler logic (`docs/scheduler.md`): 5-field cron evaluated in UTC, the task registry
//! (`ops/task_registry.yml`) and its validation, planning which runs are due in a span of
//! minutes, and the `/etc/cron.d` file rendered from the registry with its drift check.
//!
//! Architecture invariant: no I/O, no clock, no WIT. Times, file contents and what the RBAC
//! matrix knows come in as arguments; the host and the `scheduler` component are adapters.

pub mod cron;
pub mod cronfile;
pub mod plan;
pub mod registry;

pub use cron::{CronError, Schedule};
pub use registry::{Catalog, Job, Registry, RegistryError};
