//! Process-wide counters, exposed in Prometheus text format by the HTTP service.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static EVENTS_APPENDED: AtomicU64 = AtomicU64::new(0);
static BATCHES_APPENDED: AtomicU64 = AtomicU64::new(0);
/// Batch sizes in buckets of powers of four: ≤1, ≤4, ≤16, ≤64, ≤256, ≤1024, more.
const BATCH_BUCKETS: [u64; 6] = [1, 4, 16, 64, 256, 1024];
static BATCH_SIZE_BUCKETS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
static PROJECTION_POSITION: AtomicU64 = AtomicU64::new(0);
static LOG_LENGTH: AtomicU64 = AtomicU64::new(0);

/// Records one durable append of `events` events.
pub fn record_batch(events: u64) {
    EVENTS_APPENDED.fetch_add(events, Ordering::Relaxed);
    BATCHES_APPENDED.fetch_add(1, Ordering::Relaxed);
    let bucket = BATCH_BUCKETS
        .iter()
        .position(|&b| events <= b)
        .unwrap_or(BATCH_BUCKETS.len());
    BATCH_SIZE_BUCKETS[bucket].fetch_add(1, Ordering::Relaxed);
}

/// Events and durable appends so far in this process.
pub fn appended() -> (u64, u64) {
    (
        EVENTS_APPENDED.load(Ordering::Relaxed),
        BATCHES_APPENDED.load(Ordering::Relaxed),
    )
}

/// Records how far the read side has folded and how long the log is.
pub fn record_positions(projection_position: u64, log_length: u64) {
    PROJECTION_POSITION.store(projection_position, Ordering::Relaxed);
    LOG_LENGTH.store(log_length, Ordering::Relaxed);
}

/// The counters in Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    let events = EVENTS_APPENDED.load(Ordering::Relaxed);
    let batches = BATCHES_APPENDED.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP ledger_events_appended_total Events appended durably by this process."
    );
    let _ = writeln!(out, "# TYPE ledger_events_appended_total counter");
    let _ = writeln!(out, "ledger_events_appended_total {events}");
    let _ = writeln!(
        out,
        "# HELP ledger_append_batch_events Events per durable append (group commit)."
    );
    let _ = writeln!(out, "# TYPE ledger_append_batch_events histogram");
    let mut cumulative = 0;
    for (i, b) in BATCH_BUCKETS.iter().enumerate() {
        cumulative += BATCH_SIZE_BUCKETS[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ledger_append_batch_events_bucket{{le=\"{b}\"}} {cumulative}"
        );
    }
    cumulative += BATCH_SIZE_BUCKETS[BATCH_BUCKETS.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "ledger_append_batch_events_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "ledger_append_batch_events_sum {events}");
    let _ = writeln!(out, "ledger_append_batch_events_count {batches}");
    let position = PROJECTION_POSITION.load(Ordering::Relaxed);
    let length = LOG_LENGTH.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP ledger_log_length Events in the log.");
    let _ = writeln!(out, "# TYPE ledger_log_length gauge");
    let _ = writeln!(out, "ledger_log_length {length}");
    let _ = writeln!(out, "# HELP ledger_projection_lag_events Events appended but not yet folded into the read models.");
    let _ = writeln!(out, "# TYPE ledger_projection_lag_events gauge");
    let _ = writeln!(
        out,
        "ledger_projection_lag_events {}",
        length.saturating_sub(position)
    );
    out
}
