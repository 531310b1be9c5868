//! The store of this instance, chosen by the host's config and kept open across the calls a
//! warm instance serves, so the JSONL index stays warm.
//!
//! Backends: `null`, `jsonl`, `memory` (the JSONL code over a per-process directory),
//! `postgres` (through the host's Postgres import; needs a `postgres` grant) and `auto`
//! ([`AutoStore`]: Postgres with the JSONL directory as fallback and outage journal; JSONL
//! alone when the host configured no Postgres).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use backlog_core::Error;
use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};
use backlog_store::{
    Access, AutoStore, DEFAULT_RETRY_SECONDS, Durability, JsonlStore, NullStore, PostgresStore,
};
use serde::Deserialize;

use crate::bindings::backlog_bridge::store::dir_lock;
use crate::pg::WitSql;

/// What the host tells this guest about storage (the `config` of the call context).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// `auto`, `postgres`, `jsonl`, `memory` or `null`.
    pub backend: String,
    /// Guest path of the store directory, when granted.
    #[serde(default)]
    pub backlog_dir: Option<String>,
    /// `read` or `read_write`.
    #[serde(default)]
    pub backlog_access: Option<String>,
    /// Guest path of the reports directory, when granted (admin calls).
    #[serde(default)]
    pub reports_dir: Option<String>,
    /// `host`: the host syncs both files after the call (in parallel) before acknowledging;
    /// absent: this store syncs each write itself.
    #[serde(default)]
    pub sync: Option<String>,
    /// `on_demand`: the host did not lock the directory for this write-capable call; the
    /// `auto` store takes the lock through the host's `dir-lock` import if it turns to the
    /// directory. Absent: the host holds it.
    #[serde(default)]
    pub dir_lock: Option<String>,
    /// The backlog policy as JSON text (order of `categories` matters); default when absent.
    #[serde(default)]
    pub policy: Option<String>,
    /// The Postgres grant of this call: `read` or `read_write`; absent = none (no Postgres
    /// configured, or not for this action).
    #[serde(default)]
    pub postgres: Option<String>,
    /// `auto`: seconds before a Postgres found down is tried again
    /// (`BACKLOG_PG_RETRY_SECONDS`, default 300).
    #[serde(default)]
    pub pg_retry_seconds: Option<u64>,
    /// The caller's entitlements, as the host's RBAC matrix lists them (data only: absent or
    /// empty grants nothing beyond what the action itself allows).
    #[serde(default)]
    pub entitlements: Vec<String>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, Error> {
        serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("host sent an invalid config: {e}")))
    }
}

/// An open store: the auto store needs each call's time, the others only `begin_call`.
enum Store {
    Plain(Box<dyn BacklogStore>),
    Auto(Box<AutoStore<WitSql>>),
}

struct Open {
    config: Rc<Config>,
    store: Store,
}

thread_local! {
    static STORE: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// Runs `f` with the store `config` names for a call at `now`, opening it if this instance
/// has not yet.
pub fn with_store<T>(
    config: &Rc<Config>,
    now: &str,
    f: impl FnOnce(&mut dyn BacklogStore) -> Result<T, Error>,
) -> Result<T, Error> {
    STORE.with(|cell| {
        let mut slot = cell.borrow_mut();
        // The same text decodes to the same `Rc` (`component::decoded`): a pointer compare
        // on a warm call. `==` is the fallback, and compares the policy text too (kilobytes,
        // through wasi-libc's byte-at-a-time `memcmp`: 10 % of a warm `get`).
        if slot
            .as_ref()
            .is_none_or(|o| !Rc::ptr_eq(&o.config, config) && *o.config != **config)
        {
            *slot = Some(Open {
                config: Rc::clone(config),
                store: open(config)?,
            });
        }
        match slot.as_mut() {
            Some(open) => match &mut open.store {
                Store::Plain(store) => {
                    store.begin_call();
                    let out = f(store.as_mut());
                    finish(out, store.end_call())
                }
                Store::Auto(auto) => {
                    auto.begin_call_at(now);
                    let out = f(auto.as_mut());
                    finish(out, auto.end_call())
                }
            },
            None => Err(Error::internal("store not open")),
        }
    })
}

/// A call's answer once the store has ended the call: the call's own error first, else the
/// store's (its writes could not be made one unit).
fn finish<T>(out: Result<T, Error>, end: Result<(), StoreError>) -> Result<T, Error> {
    let value = out?;
    end.map_err(Error::from)?;
    Ok(value)
}

fn open(config: &Config) -> Result<Store, Error> {
    let dir = || {
        config
            .backlog_dir
            .as_ref()
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::forbidden("this call was granted no access to the backlog directory")
            })
    };
    let access = match config.backlog_access.as_deref() {
        Some("read_write") => Access::ReadWrite,
        _ => Access::ReadOnly,
    };
    let durability = match config.sync.as_deref() {
        Some("host") => Durability::Deferred,
        _ => Durability::SyncEachWrite,
    };
    let jsonl = |dir| {
        JsonlStore::open(dir, access, Box::new(|m: &str| crate::log::log(m)))
            .with_durability(durability)
    };
    let postgres = matches!(config.postgres.as_deref(), Some("read" | "read_write"));
    // Write calls lock the rows they read (`SELECT … FOR UPDATE`): the host takes no lock.
    let pg = || {
        PostgresStore::new(WitSql).with_row_locks(config.postgres.as_deref() == Some("read_write"))
    };
    let plain = |s: Box<dyn BacklogStore>| Ok(Store::Plain(s));
    match config.backend.as_str() {
        "null" => plain(Box::new(NullStore)),
        "jsonl" => plain(Box::new(jsonl(dir()?))),
        "memory" => plain(Box::new(Renamed {
            name: "memory",
            inner: jsonl(dir()?),
        })),
        "postgres" if postgres => plain(Box::new(pg())),
        "postgres" => Err(Error::unavailable(
            "no Postgres configured: BACKLOG_BACKEND=postgres needs BACKLOG_POSTGRES_DSN or POSTGRES_DSN",
        )),
        // Auto without Postgres is the JSONL store; without the directory, Postgres alone.
        "auto" => match (postgres, config.backlog_dir.is_some()) {
            (true, true) => {
                let auto = AutoStore::new(
                    pg(),
                    jsonl(dir()?),
                    config.pg_retry_seconds.unwrap_or(DEFAULT_RETRY_SECONDS),
                    Box::new(|m: &str| crate::log::log(m)),
                );
                Ok(Store::Auto(Box::new(match config.dir_lock.as_deref() {
                    Some("on_demand") => auto.with_dir_lock(Box::new(dir_lock::acquire)),
                    _ => auto,
                })))
            }
            (true, false) => plain(Box::new(pg())),
            (false, _) => plain(Box::new(jsonl(dir()?))),
        },
        other => Err(Error::unavailable(format!(
            "backend `{other}` is not available in this build"
        ))),
    }
}

/// The `memory` backend: the JSONL code over a directory that lives only as long as the host
/// process (the host creates and removes it), reported under its own name.
struct Renamed<S> {
    name: &'static str,
    inner: S,
}

impl<S: BacklogStore> BacklogStore for Renamed<S> {
    fn backend(&self) -> &'static str {
        self.name
    }
    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(id)
    }
    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        self.inner.find_by_dedupe_key(key)
    }
    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        self.inner.list(query, today)
    }
    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.events(item_id, limit)
    }
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        self.inner.write(item, events)
    }
    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        self.inner.keys(env)
    }
    fn begin_call(&mut self) {
        self.inner.begin_call()
    }
    fn end_call(&mut self) -> Result<(), StoreError> {
        self.inner.end_call()
    }
    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        self.inner.cleanup(cutoff, dry_run)
    }
    fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        // The inner store stamps its own name; the dashboard names the configured store.
        let mut d = self.inner.dashboard(env, today, policy)?;
        d.backend = self.name.to_owned();
        Ok(d)
    }
}
