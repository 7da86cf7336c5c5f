//! The correlation table of a sidecar: trace-header value → lane, recorded when the
//! sidecar's inbound side sees a request with a lane, read when the application's
//! outbound call carries the same trace value but no lane. Bounded in entries (least
//! recently used evicted first), entries expire after a TTL, O(1) per operation, and
//! sharded so concurrent requests rarely contend.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Keys longer than this are not recorded (a trace id is far shorter).
pub const MAX_KEY_BYTES: usize = 256;
const SHARDS: usize = 16;

struct Entry<V> {
    lane: V,
    at: Instant,
}

/// A bounded trace → value map: the lane of a trace by default; a sidecar also keeps a
/// trace's fallback and hop count this way.
pub struct CorrelationTable<V = Arc<str>> {
    shards: Vec<Mutex<LruCache<Box<str>, Entry<V>>>>,
    capacity: usize,
    ttl: Duration,
    entries: Gauge,
    evictions: Counter,
}

impl<V: Clone> std::fmt::Debug for CorrelationTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorrelationTable")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("len", &self.len())
            .finish()
    }
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap, and keys are not attacker-chosen to collide in a useful way since
    // each shard is bounded on its own.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

impl<V: Clone> CorrelationTable<V> {
    /// A table holding at most `capacity` entries (at least one per shard), each valid
    /// for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self::with_metrics(capacity, ttl, Gauge::default(), Counter::default())
    }

    /// Like [`CorrelationTable::new`], reporting its size and evictions into the given
    /// metric handles.
    pub fn with_metrics(
        capacity: usize,
        ttl: Duration,
        entries: Gauge,
        evictions: Counter,
    ) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let cap = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        CorrelationTable {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(cap)))
                .collect(),
            capacity: per_shard * SHARDS,
            ttl,
            entries,
            evictions,
        }
    }

    /// The most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries now held (expired ones included until touched or evicted).
    pub fn len(&self) -> usize {
        usize::try_from(self.entries.get()).unwrap_or(0)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted to make room, since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions.get()
    }

    /// Records `trace → lane` at `now`.
    pub fn record_at(&self, trace: &str, lane: V, now: Instant) {
        if trace.is_empty() || trace.len() > MAX_KEY_BYTES {
            return;
        }
        let Ok(mut shard) = self.shards[shard_of(trace)].lock() else {
            return;
        };
        if let Some(e) = shard.get_mut(trace) {
            e.lane = lane;
            e.at = now;
            return;
        }
        if shard.push(trace.into(), Entry { lane, at: now }).is_some() {
            self.evictions.inc();
        } else {
            self.entries.inc();
        }
    }

    /// Records `trace → lane` now.
    pub fn record(&self, trace: &str, lane: V) {
        self.record_at(trace, lane, Instant::now());
    }

    /// The lane recorded for `trace`, if any and not expired at `now`.
    pub fn lookup_at(&self, trace: &str, now: Instant) -> Option<V> {
        if trace.is_empty() || trace.len() > MAX_KEY_BYTES {
            return None;
        }
        let mut shard = self.shards[shard_of(trace)].lock().ok()?;
        let entry = shard.get(trace)?;
        if now.duration_since(entry.at) > self.ttl {
            shard.pop(trace);
            self.entries.dec();
            return None;
        }
        Some(entry.lane.clone())
    }

    /// The lane recorded for `trace`, if any and not expired.
    pub fn lookup(&self, trace: &str) -> Option<V> {
        self.lookup_at(trace, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_expires() {
        let t: CorrelationTable = CorrelationTable::new(100, Duration::from_secs(60));
        let now = Instant::now();
        t.record_at("9999", "canary".into(), now);
        assert_eq!(t.lookup_at("9999", now).as_deref(), Some("canary"));
        assert_eq!(t.lookup_at("9999", now + Duration::from_secs(61)), None);
        assert_eq!(t.len(), 0, "an expired entry is dropped when read");
        assert_eq!(t.lookup_at("other", now), None);
    }

    #[test]
    fn a_flood_of_unique_keys_evicts_and_never_grows() {
        let t: CorrelationTable = CorrelationTable::new(1000, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..50_000u32 {
            t.record_at(&format!("trace-{i}"), "canary".into(), now);
            assert!(t.len() <= t.capacity());
        }
        assert_eq!(t.len(), t.capacity());
        assert_eq!(t.evictions(), 50_000 - t.capacity() as u64);
        // The newest survive.
        assert!(t.lookup_at("trace-49999", now).is_some());
    }

    #[test]
    fn refuses_oversized_keys() {
        let t: CorrelationTable = CorrelationTable::new(10, Duration::from_secs(1));
        let big = "x".repeat(MAX_KEY_BYTES + 1);
        t.record(&big, "canary".into());
        assert!(t.is_empty());
    }
}
