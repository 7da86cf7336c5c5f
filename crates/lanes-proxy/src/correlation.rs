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

use crate::trace::from_hex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Keys longer than this are not recorded (a trace id is far shorter).
pub const MAX_KEY_BYTES: usize = 256;
const SHARDS: usize = 16;

struct Entry<V> {
    lane: V,
    at: Instant,
}

/// The 16 bytes of a trace value that spells an id of 16 bytes: a UUID (`8-4-4-4-12`
/// hex digits, as a trace header usually holds) or 32 hex digits (as a `traceparent`
/// trace-id is).
fn id_bytes(trace: &str) -> Option<[u8; 16]> {
    let b = trace.as_bytes();
    match b.len() {
        32 => from_hex(trace),
        36 if [b[8], b[13], b[18], b[23]] == [b'-'; 4] => {
            let mut digits = [0u8; 32];
            for (d, &at) in digits.iter_mut().zip(&UUID_DIGITS) {
                *d = *b.get(at)?;
            }
            from_hex(std::str::from_utf8(&digits).ok()?)
        }
        _ => None,
    }
}

/// Where the 32 digits of a UUID stand in its `8-4-4-4-12` spelling.
const UUID_DIGITS: [usize; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35,
];

/// The trace a trace value names, as 16 bytes: the id it spells (a UUID, or the 32
/// hex digits of a `traceparent` trace-id), else a 128-bit FNV-1a hash of it, never all
/// zero. The gateway gives a trace it starts for a request with a trace header this id,
/// so the header and the trace-id of `traceparent` name one trace: one correlation
/// entry, and `lanes trace` finds the request by the id its client sent.
pub fn trace_id_of(trace: &str) -> [u8; 16] {
    if let Some(id) = id_bytes(trace).filter(|id| *id != [0; 16]) {
        return id;
    }
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = trace
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    hash.max(1).to_be_bytes()
}

/// Whether two trace values name the same trace (see [`trace_id_of`]).
pub fn same_trace(a: &str, b: &str) -> bool {
    a == b || trace_id_of(a) == trace_id_of(b)
}

/// A bounded trace → value map: the lane of a trace by default; a sidecar also keeps a
/// trace's fallback and hop count this way. Keyed by the trace a value names, so a
/// trace header and a `traceparent` of the same trace share an entry.
pub struct CorrelationTable<V = Arc<str>> {
    shards: Vec<Mutex<LruCache<[u8; 16], Entry<V>>>>,
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

fn shard_of(key: &[u8; 16]) -> usize {
    // The key is an id or a hash: its last byte is spread evenly enough.
    usize::from(key[15]) % SHARDS
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
        let key = trace_id_of(trace);
        let Ok(mut shard) = self.shards[shard_of(&key)].lock() else {
            return;
        };
        if let Some(e) = shard.get_mut(&key) {
            e.lane = lane;
            e.at = now;
            return;
        }
        if shard.push(key, Entry { lane, at: now }).is_some() {
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
        let key = trace_id_of(trace);
        let mut shard = self.shards[shard_of(&key)].lock().ok()?;
        let entry = shard.get(&key)?;
        if now.duration_since(entry.at) > self.ttl {
            shard.pop(&key);
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
    fn any_other_value_names_a_trace_of_its_hash() {
        let a = trace_id_of("request-1");
        assert_ne!(a, [0; 16]);
        assert_eq!(a, trace_id_of("request-1"), "the same in every process");
        assert_ne!(a, trace_id_of("request-2"));
        assert!(same_trace("request-1", &crate::trace::Hex(a).to_string()));
        assert!(!same_trace("request-1", "request-2"));
        // The nil UUID spells no valid trace-id: it is hashed like any other value.
        assert_ne!(trace_id_of("00000000-0000-0000-0000-000000000000"), [0; 16]);
    }

    #[test]
    fn a_uuid_and_the_trace_id_of_its_bytes_are_one_entry() {
        let t: CorrelationTable = CorrelationTable::new(100, Duration::from_secs(60));
        let uuid = "4BF92F35-77B3-4DA6-A3CE-929D0E0E4736";
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert!(same_trace(uuid, trace_id));
        t.record(uuid, "canary".into());
        t.record(trace_id, "canary".into());
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(trace_id).as_deref(), Some("canary"));
        assert_eq!(t.lookup(&uuid.to_lowercase()).as_deref(), Some("canary"));
        for other in [
            "4bf92f3577b34da6a3ce929d0e0e4737",
            "4bf92f35-77b3-4da6-a3ce-929d0e0e473",
            "4bf92f35+77b3-4da6-a3ce-929d0e0e4736",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "request-1",
        ] {
            assert!(!same_trace(uuid, other), "{other}");
            assert_eq!(t.lookup(other), None, "{other}");
        }
        assert!(same_trace("request-1", "request-1"));
    }

    #[test]
    fn refuses_oversized_keys() {
        let t: CorrelationTable = CorrelationTable::new(10, Duration::from_secs(1));
        let big = "x".repeat(MAX_KEY_BYTES + 1);
        t.record(&big, "canary".into());
        assert!(t.is_empty());
    }
}
