//! Where the time of projected batches goes, for `sentinel bench projections --verbose`.
//!
//! Every phase of a batch adds its wall time to a process-wide counter; [`snapshot`] reads
//! them and [`reset`] zeroes them (the benchmark does both around each rebuild). The
//! counters are relaxed atomics: a few nanoseconds per batch, always on. Phases that run
//! concurrently (the read-ahead of the next batch runs while this one is written) overlap,
//! so the sum can exceed the wall time; `wait` is the time a batch actually waited for its
//! read-ahead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

macro_rules! phases {
    ($($variant:ident => $name:literal,)*) => {
        /// A phase of projecting a batch.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Phase {
            $($variant,)*
        }

        const NAMES: &[&str] = &[$($name,)*];
    };
}

phases! {
    Read => "read (log)",
    Decode => "decode",
    Wait => "wait for read-ahead",
    WaitWrite => "wait for the batch before",
    Begin => "begin + checkpoint",
    Plan => "plan",
    Keys => "keys",
    Load => "load existing rows",
    Fold => "fold in memory",
    Encode => "encode params",
    UpsertFailures => "upsert failures",
    UpsertDecisions => "upsert policy_decisions",
    UpsertAgents => "upsert agents",
    UpsertTasks => "upsert agent_tasks",
    UpsertFixes => "upsert failure_fixes",
    UpsertPullRequests => "upsert pull_requests",
    UpsertReviews => "upsert reviews",
    UpsertRollbacks => "upsert rollbacks",
    Copy => "copy new rows (all tables)",
    Commit => "commit",
}

static NANOS: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];

/// Adds `d` to `phase`.
pub(crate) fn add(phase: Phase, d: Duration) {
    let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    NANOS[phase as usize].fetch_add(n, Ordering::Relaxed);
}

/// Adds the time since `started` to `phase` and returns now (to time the next phase).
pub(crate) fn lap(phase: Phase, started: Instant) -> Instant {
    let now = Instant::now();
    add(phase, now - started);
    now
}

/// Each phase's accumulated time since the last [`reset`], in pipeline order (phases
/// with no time are left out).
pub fn snapshot() -> Vec<(&'static str, Duration)> {
    NAMES
        .iter()
        .zip(&NANOS)
        .map(|(name, n)| (*name, Duration::from_nanos(n.load(Ordering::Relaxed))))
        .filter(|(_, d)| !d.is_zero())
        .collect()
}

/// Zeroes every phase.
pub fn reset() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
}
