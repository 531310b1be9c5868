//! CPU time spent by processes during a load, from `/proc` (Linux): what each side of a
//! Postgres figure costs per request, so a ratio can be read against what the machine allows.

use std::time::Duration;

/// CPU (user + system) of a process, its threads included, and of its waited-for children.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub own: Duration,
    pub children: Duration,
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold spaces.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // The state (a letter) first; the numbers after it.
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(n * 1_000_000_000 / hz)
}

/// The CPU of process `pid` (`"self"` for this one); zero if it is gone.
pub fn of(pid: &str) -> Cpu {
    // After the state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime.
    match stat_fields(pid) {
        Some(f) if f.len() > 13 => Cpu {
            own: ticks(f[10] + f[11]),
            children: ticks(f[12] + f[13]),
        },
        _ => Cpu::default(),
    }
}

/// The parent of process `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(&pid.to_string())?.first().map(|p| *p as u32)
}

/// Process ids whose parent is `root`.
fn children(root: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| parent(pid) == Some(root))
        .collect()
}

/// Everything a server process tree has spent: the root, its live children, and the
/// children it has reaped (a backend that exited counts in its parent's `children`). The
/// root is read after its children, so a child reaped in between counts twice rather than
/// not at all: a later reading is never below an earlier one.
pub fn tree(root: u32) -> Duration {
    let live: Duration = children(root)
        .into_iter()
        .map(|pid| of(&pid.to_string()).own)
        .sum();
    let root_cpu = of(&root.to_string());
    root_cpu.own + root_cpu.children + live
}

/// What the live children of `root` whose command line names `database` have spent: a
/// Postgres server's backends serving clients of that database (its background processes —
/// WAL writer, checkpointer, autovacuum — name none).
pub fn backends(root: u32, database: &str) -> Duration {
    children(root)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .split([' ', '\0'])
                    .any(|word| word == database)
            })
        })
        .map(|pid| of(&pid.to_string()).own)
        .sum()
}
