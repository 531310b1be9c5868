//! `BENCH_ONLY=reload`: issue 19's reload figure — the time of a reload whose components are
//! unchanged (target ≤ 50 ms: the whole config dir read and checked, the keys and the task
//! registry, the bridge swapped), and a warm `get`'s latency while reloads run back to back
//! in another thread against the same latency without them (no call waits on a reload).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backlog_bridge::call::{Meta, call};
use backlog_bridge::registry::Live;
use backlog_bridge::reload::{Reloader, Trigger};
use serde_json::json;

pub fn bench(tmp: &Path, iters: usize) {
    let root = tmp.join("reload");
    super::generate(&root.join("backlog"), 1000);
    let live = Arc::new(Live::new(Arc::new(super::load_bridge(&root))));
    let reloader = Arc::new(Reloader::new(live.clone()));
    let reload = || {
        reloader
            .reload(&Trigger::Signal, |_| Ok(()), |()| {})
            .expect("reload");
    };
    reload();
    let times = super::measure(iters.min(100), reload);
    super::report(
        "reload, components unchanged",
        &times,
        Some(Duration::from_millis(50)),
    );

    let get = json!({"id": super::item_id(3)}).to_string();
    let one = || {
        call(
            live.current(),
            "operator",
            "backlog_tool",
            "get",
            get.clone(),
            Meta::quiet(),
        )
        .expect("get");
    };
    let idle = super::measure(iters * 5, one);
    super::report("warm `get`, no reload running", &idle, None);
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = std::thread::spawn({
        let (reloader, stop) = (reloader.clone(), stop.clone());
        move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = reloader.reload(&Trigger::Signal, |_| Ok(()), |()| {});
                n += 1;
            }
            n
        }
    });
    let busy = super::measure(iters * 5, one);
    stop.store(true, Ordering::Relaxed);
    let n = reloads.join().expect("reload thread");
    super::report(
        &format!("warm `get`, reloads back to back ({n})"),
        &busy,
        None,
    );
    super::ratio("get under reloads / idle", &busy, &idle);
}
