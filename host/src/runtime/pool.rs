//! Warm instances and who may reuse them (`docs/isolation.md`).
//!
//! A guest may keep anything in its linear memory between calls (statics, caches), so an
//! instance that served one caller must never serve another unless its plugin says so. Each
//! plugin chooses ([`Instances`], `plugins.yml` `instances`): a fresh instance per call, warm
//! instances per (caller, grant set), or warm instances shared by every caller of a grant set.
//! The [`Pool`] holds what may be reused, bounded however many callers come: at most
//! [`PER_KEY`] instances per (plugin, caller, grants), at most the plugin's `max_pooled`
//! (default [`PLUGIN_MAX`]) per plugin and [`TOTAL_MAX`] in all, the least recently used going
//! first.
//!
//! Must not: hand an instance to a key other than the one it was put back under; keep an
//! empty entry for a caller (the map would grow with callers).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use wasmtime::Store;

use super::bindings::{CallContext, ToolHost};
use super::sandbox::HostState;
use crate::grants::Grants;

/// Who may reuse an instance of a plugin (`plugins.yml` `instances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// A fresh instance for every call; nothing is ever reused (the default of component
    /// files).
    PerCall,
    /// Warm instances reused only by the same caller (agent) with the same grants (the
    /// default of builtin tools).
    PerCaller,
    /// Warm instances reused by every caller with the same grants: a statement that the
    /// plugin keeps nothing of one call that another caller may not see.
    Shared,
}

impl Instances {
    /// The setting's name in `plugins.yml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Instances::PerCall => "per-call",
            Instances::PerCaller => "per-caller",
            Instances::Shared => "shared",
        }
    }
}

/// Warm instances kept per (plugin, caller, grants); more concurrent calls than this leave
/// their extra instances to be dropped.
pub const PER_KEY: usize = 4;
/// Warm instances kept per plugin by default (`plugins.yml` `max_pooled`).
pub const PLUGIN_MAX: usize = 16;
/// Warm instances kept in all: half the engine's 64 component instance slots
/// (`engine.rs`), so running calls always find slots.
pub const TOTAL_MAX: usize = 32;

/// How a plugin's instances are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    pub instances: Instances,
    /// Warm instances kept for this plugin at most (0: none).
    pub max_pooled: usize,
}

impl Default for Reuse {
    fn default() -> Reuse {
        Reuse {
            instances: Instances::PerCall,
            max_pooled: PLUGIN_MAX,
        }
    }
}

/// Which warm instances a call may take: same plugin, same grants, and — unless the plugin is
/// `shared` — the same caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    plugin: u64,
    caller: Option<String>,
    grants: Grants,
}

impl Key {
    /// The key of one call of plugin `plugin` (a process-unique id) by `caller`; `None` when
    /// nothing may be reused (`per-call`, or a plugin that keeps no warm instances).
    pub fn for_call(reuse: Reuse, plugin: u64, caller: &str, grants: Grants) -> Option<Key> {
        let caller = match reuse.instances {
            _ if reuse.max_pooled == 0 => return None,
            Instances::PerCall => return None,
            Instances::PerCaller => Some(caller.to_owned()),
            Instances::Shared => None,
        };
        Some(Key {
            plugin,
            caller,
            grants,
        })
    }
}

/// A warm instance: its store (with the grants it was built for) and the instance.
pub struct Warm {
    pub store: Store<HostState>,
    pub instance: ToolHost,
    /// The last call's context, refilled in place by the next: no allocation, and the
    /// config's text (kilobytes) sent only when it is another `Arc` than `config`'s.
    pub context: CallContext,
    /// The config this instance was last sent (`Context::fill` in `plugin.rs`).
    pub config: Option<Arc<str>>,
}

impl Warm {
    /// A new instance with an empty context.
    pub fn new(store: Store<HostState>, instance: ToolHost) -> Warm {
        Warm {
            store,
            instance,
            context: CallContext {
                actor: String::new(),
                request_id: String::new(),
                now: String::new(),
                config: None,
            },
            config: None,
        }
    }
}

/// The bounded pool of reusable values (warm instances in the host, anything in tests).
pub struct Pool<T> {
    inner: Mutex<Inner<T>>,
    total_max: usize,
}

struct Inner<T> {
    /// The stamp of the next value put back (increasing: larger is more recent).
    next: u64,
    /// Values by key, oldest first.
    by_key: HashMap<Key, Vec<(u64, T)>>,
    /// Every pooled value's stamp → its key: the least recently used first.
    order: BTreeMap<u64, Key>,
    /// Values pooled per plugin.
    per_plugin: HashMap<u64, usize>,
}

impl<T> Inner<T> {
    /// Removes the value with `stamp` under `key`.
    fn remove(&mut self, stamp: u64, key: &Key) -> Option<T> {
        let slot = self.by_key.get_mut(key)?;
        let at = slot.iter().position(|(s, _)| *s == stamp)?;
        let (_, value) = slot.remove(at);
        if slot.is_empty() {
            self.by_key.remove(key);
        }
        self.order.remove(&stamp);
        if let Some(n) = self.per_plugin.get_mut(&key.plugin) {
            *n -= 1;
            if *n == 0 {
                self.per_plugin.remove(&key.plugin);
            }
        }
        Some(value)
    }

    /// Removes the least recently used value matching `which`.
    fn evict(&mut self, which: impl Fn(&Key) -> bool) -> Option<T> {
        let (stamp, key) = self
            .order
            .iter()
            .find(|(_, k)| which(k))
            .map(|(s, k)| (*s, k.clone()))?;
        self.remove(stamp, &key)
    }
}

impl<T> Pool<T> {
    /// A pool holding at most `total_max` values.
    pub fn new(total_max: usize) -> Pool<T> {
        Pool {
            inner: Mutex::new(Inner {
                next: 0,
                by_key: HashMap::new(),
                order: BTreeMap::new(),
                per_plugin: HashMap::new(),
            }),
            total_max,
        }
    }

    /// The most recently put value under `key`, taken out of the pool.
    pub fn take(&self, key: &Key) -> Option<T> {
        let mut inner = self.inner.lock().ok()?;
        let stamp = inner.by_key.get(key)?.last()?.0;
        inner.remove(stamp, key)
    }

    /// Puts `value` back under `key`; evicts what is over the bounds (the least recently used
    /// of the key, then of the plugin, then of the pool), with `plugin_max` the plugin's bound.
    /// Evicted values are dropped after the lock is released.
    pub fn put(&self, key: Key, value: T, plugin_max: usize) {
        let mut evicted = Vec::new();
        if let Ok(mut inner) = self.inner.lock() {
            let stamp = inner.next;
            inner.next += 1;
            inner.order.insert(stamp, key.clone());
            *inner.per_plugin.entry(key.plugin).or_default() += 1;
            let slot = inner.by_key.entry(key.clone()).or_default();
            slot.push((stamp, value));
            if slot.len() > PER_KEY {
                let oldest = slot[0].0;
                evicted.extend(inner.remove(oldest, &key));
            }
            while inner.per_plugin.get(&key.plugin).copied().unwrap_or(0) > plugin_max {
                match inner.evict(|k| k.plugin == key.plugin) {
                    Some(v) => evicted.push(v),
                    None => break,
                }
            }
            while inner.order.len() > self.total_max {
                match inner.evict(|_| true) {
                    Some(v) => evicted.push(v),
                    None => break,
                }
            }
        }
        drop(evicted);
    }

    /// Drops the least recently used value of the whole pool (to free an engine slot for a
    /// fresh instance); whether there was one.
    pub fn evict_lru(&self) -> bool {
        let evicted = self.inner.lock().ok().and_then(|mut i| i.evict(|_| true));
        evicted.is_some()
    }

    /// Drops every value of `plugin` (the plugin is unloaded).
    pub fn clear_plugin(&self, plugin: u64) {
        let mut evicted = Vec::new();
        if let Ok(mut inner) = self.inner.lock() {
            while let Some(v) = inner.evict(|k| k.plugin == plugin) {
                evicted.push(v);
            }
        }
        drop(evicted);
    }

    /// Values pooled for `plugin`.
    pub fn pooled(&self, plugin: u64) -> usize {
        self.inner
            .lock()
            .map(|i| i.per_plugin.get(&plugin).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Values pooled in all.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.order.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct keys with a pooled value (bounded by the pool's size).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.inner.lock().map(|i| i.by_key.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Access;

    fn reuse(instances: Instances) -> Reuse {
        Reuse {
            instances,
            max_pooled: PLUGIN_MAX,
        }
    }

    fn key(plugin: u64, caller: &str) -> Key {
        Key::for_call(
            reuse(Instances::PerCaller),
            plugin,
            caller,
            Grants::default(),
        )
        .unwrap()
    }

    #[test]
    fn keys_follow_the_setting() {
        let g = Grants::default();
        assert_eq!(Key::for_call(reuse(Instances::PerCall), 1, "a", g), None);
        assert_ne!(
            Key::for_call(reuse(Instances::PerCaller), 1, "a", g),
            Key::for_call(reuse(Instances::PerCaller), 1, "b", g)
        );
        assert_eq!(
            Key::for_call(reuse(Instances::Shared), 1, "a", g),
            Key::for_call(reuse(Instances::Shared), 1, "b", g)
        );
        let read = Grants {
            backlog_dir: Access::Read,
            ..g
        };
        assert_ne!(
            Key::for_call(reuse(Instances::Shared), 1, "a", g),
            Key::for_call(reuse(Instances::Shared), 1, "a", read)
        );
        assert_ne!(
            Key::for_call(reuse(Instances::Shared), 1, "a", g),
            Key::for_call(reuse(Instances::Shared), 2, "a", g)
        );
        let none = Reuse {
            instances: Instances::Shared,
            max_pooled: 0,
        };
        assert_eq!(Key::for_call(none, 1, "a", g), None);
    }

    #[test]
    fn a_value_goes_only_to_its_own_key_most_recent_first() {
        let pool = Pool::new(TOTAL_MAX);
        pool.put(key(1, "alice"), "a1", PLUGIN_MAX);
        pool.put(key(1, "alice"), "a2", PLUGIN_MAX);
        assert_eq!(pool.take(&key(1, "bob")), None);
        assert_eq!(pool.take(&key(2, "alice")), None);
        assert_eq!(pool.take(&key(1, "alice")), Some("a2"));
        assert_eq!(pool.take(&key(1, "alice")), Some("a1"));
        assert_eq!(pool.take(&key(1, "alice")), None);
        assert!(pool.is_empty());
        assert_eq!(pool.keys(), 0, "no empty entry is kept");
    }

    #[test]
    fn bounds_per_key_per_plugin_and_in_all_evict_the_least_recently_used() {
        let pool = Pool::new(6);
        for i in 0..10 {
            pool.put(key(1, "alice"), i, PLUGIN_MAX);
        }
        assert_eq!(pool.pooled(1), PER_KEY);
        assert_eq!(pool.take(&key(1, "alice")), Some(9));
        // Many callers: the plugin keeps its bound, the oldest callers go first.
        let pool = Pool::new(100);
        for i in 0..1000 {
            pool.put(key(1, &format!("agent{i}")), i, 5);
        }
        assert_eq!(pool.pooled(1), 5);
        assert_eq!(pool.keys(), 5);
        assert_eq!(pool.take(&key(1, "agent994")), None);
        assert_eq!(pool.take(&key(1, "agent995")), Some(995));
        assert_eq!(pool.take(&key(1, "agent999")), Some(999));
        // The total bound across plugins.
        let pool = Pool::new(6);
        for i in 0..4 {
            pool.put(key(1, &format!("a{i}")), i, PLUGIN_MAX);
            pool.put(key(2, &format!("a{i}")), 10 + i, PLUGIN_MAX);
        }
        assert_eq!(pool.len(), 6);
        assert_eq!((pool.pooled(1), pool.pooled(2)), (3, 3));
        assert_eq!(pool.take(&key(1, "a0")), None);
        assert_eq!(pool.take(&key(2, "a0")), None);
        // A taken value is fresh again when put back: the least recently used goes.
        let v = pool.take(&key(1, "a1")).unwrap();
        pool.put(key(1, "a1"), v, PLUGIN_MAX);
        pool.put(key(3, "x"), 99, PLUGIN_MAX);
        assert_eq!(pool.take(&key(2, "a1")), None);
        assert_eq!(pool.take(&key(1, "a1")), Some(1));
        assert!(pool.evict_lru());
        pool.clear_plugin(2);
        assert_eq!(pool.pooled(2), 0);
        assert_eq!(pool.keys(), pool.len());
    }
}
