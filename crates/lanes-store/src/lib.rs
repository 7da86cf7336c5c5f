//! The embedded object store: every object Lanes knows, in one redb file, keyed by
//! kind, namespace and name. Writes are transactions (all or nothing) that stamp
//! `resourceVersion` (one counter for the whole store), `generation` (bumped by spec
//! changes only), `uid` and `creationTimestamp`; updates that name a stale
//! `resourceVersion` are refused; `status` is written only through its own call. Every
//! change is kept in a bounded history and broadcast, so watches can start from any
//! recent resourceVersion.

use std::path::Path;

use lanes_model::{Kind, Object, ObjectKey};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Per event: when it happened (unix ms) and its size in bytes.
const EVENT_META: TableDefinition<u64, (u64, u64)> = TableDefinition::new("event_meta");

/// Events kept for watches that start in the past: the last [`HISTORY_AGE`] of changes,
/// at most this many...
pub const HISTORY: u64 = 100_000;
/// ...and at most this many bytes of them...
pub const HISTORY_BYTES: u64 = 64 * 1024 * 1024;
/// ...and none older than this.
pub const HISTORY_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The largest object stored, in bytes of JSON (the Kubernetes API server's limit).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// The store format this build writes, recorded in the file at creation.
const FORMAT: u64 = 1;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The update named a resourceVersion that is no longer current.
    #[error(
        "{key}: the object has been modified (resourceVersion {given} is stale, current is {current}); read it again and retry"
    )]
    Conflict {
        /// Object.
        key: String,
        /// The version the caller had.
        given: u64,
        /// The version in the store.
        current: u64,
    },
    /// A watch asked for history the store no longer keeps.
    #[error("resourceVersion {0} is too old; list again and watch from the list's version")]
    Gone(u64),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// A change a field's rules forbid, such as a finalizer added to an object being
    /// deleted.
    #[error("{key}: {field}: Forbidden: {message}")]
    Forbidden {
        /// Object.
        key: String,
        /// The field, as a path (`metadata.finalizers`).
        field: String,
        /// Why.
        message: String,
    },
    /// The object is larger than the store takes.
    #[error(
        "{key}: the object is {size} bytes of JSON, more than the {max} bytes an object may have"
    )]
    TooLarge {
        /// Object.
        key: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A stored object fails its checksum or does not decode: it is reported, never
    /// read as absent.
    #[error(
        "{key}: the stored object is damaged ({reason}); it is left as it is and nothing that depends on it is changed"
    )]
    Corrupt {
        /// Object.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The store file is not one Lanes wrote, or is damaged as a whole.
    #[error("{0}")]
    Damaged(String),
    /// Another process has the store file open.
    #[error("{0} is in use by another process (is another lanes up running on it?)")]
    InUse(String),
    /// The database failed.
    #[error("store: {0}")]
    Db(String),
}

/// The bytes an object is stored as: its JSON, then a CRC-32 of it (little endian).
fn encode(key: &str, value: &Value) -> Result<Vec<u8>, StoreError> {
    let mut bytes = serde_json::to_vec(value)?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(StoreError::TooLarge {
            key: key.to_string(),
            size: bytes.len(),
            max: MAX_OBJECT_BYTES,
        });
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// An object from its stored bytes, checked against its checksum.
fn decode(key: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let Some((json, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(corrupt(format!("{} bytes, too short", bytes.len())));
    };
    let (want, got) = (u32::from_le_bytes(*crc), crc32fast::hash(json));
    if want != got {
        return Err(corrupt(format!("checksum {got:08x}, stored {want:08x}")));
    }
    serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    serde_json::Error
);

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// Created.
    Added,
    /// Updated (spec, metadata or status).
    Modified,
    /// Deleted.
    Deleted,
}

/// One change, as watches deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The object after the change (before it, for a deletion).
    pub object: Value,
    /// The store's version after the change.
    #[serde(skip)]
    pub resource_version: u64,
}

impl WatchEvent {
    /// The object's key.
    pub fn key(&self) -> Option<ObjectKey> {
        key_of_value(&self.object)
    }
}

/// The storage key of an object.
pub fn storage_key(key: &ObjectKey) -> String {
    format!(
        "{}/{}/{}",
        key.kind.storage_name(),
        key.namespace.as_deref().unwrap_or(""),
        key.name
    )
}

/// The key of a stored object's JSON.
pub fn key_of_value(v: &Value) -> Option<ObjectKey> {
    let kind = Kind::of_value(v)?;
    let meta = v.get("metadata")?;
    Some(ObjectKey {
        kind,
        namespace: meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
        name: meta.get("name")?.as_str()?.to_string(),
    })
}

/// The resourceVersion of a stored object.
pub fn resource_version(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Everything of an object but its metadata and status: what `generation` tracks.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

const SERVER_FIELDS: [&str; 7] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The metadata only a delete sets: a client can neither set nor clear it.
const DELETION_FIELDS: [&str; 2] = ["deletionTimestamp", "deletionGracePeriodSeconds"];

/// An object's `metadata.finalizers`.
pub fn finalizers(v: &Value) -> Vec<&str> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a delete has been asked for an object that finalizers still hold.
pub fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// Whether a write may finish deleting an object: it is being deleted and no
/// finalizer holds it any more.
pub fn is_finalised(v: &Value) -> bool {
    is_deleting(v) && finalizers(v).is_empty()
}

/// An object without the fields the server sets, for comparisons.
pub fn without_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_FIELDS {
            meta.remove(f);
        }
    }
    v
}

/// A creation time strictly later than any given before by this process, so objects
/// order by creation even when created in the same instant.
fn creation_timestamp() -> jiff::Timestamp {
    static LAST: std::sync::Mutex<i128> = std::sync::Mutex::new(0);
    let now = jiff::Timestamp::now().as_nanosecond();
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = now.max(*last + 1);
    *last = t;
    jiff::Timestamp::from_nanosecond(t).unwrap_or_else(|_| jiff::Timestamp::now())
}

/// The creation time of a stored object (the epoch when absent or unreadable).
pub fn created_at(v: &Value) -> jiff::Timestamp {
    v.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// One write transaction. Nothing it does is visible until [`Store::write`] commits it,
/// and an error from the closure discards all of it.
pub struct Txn<'t, 'db> {
    objects: &'t mut redb::Table<'db, &'static str, &'static [u8]>,
    rv: u64,
    events: Vec<WatchEvent>,
}

impl Txn<'_, '_> {
    fn read(&self, key: &str) -> Result<Option<Value>, StoreError> {
        match self.objects.get(key)? {
            Some(bytes) => Ok(Some(decode(key, bytes.value())?)),
            None => Ok(None),
        }
    }

    fn store(&mut self, key: &str, value: &Value, kind: EventType) -> Result<(), StoreError> {
        let bytes = encode(key, value)?;
        self.objects.insert(key, bytes.as_slice())?;
        self.events.push(WatchEvent {
            kind,
            object: value.clone(),
            resource_version: self.rv,
        });
        Ok(())
    }

    /// The object with `key`, if stored.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        self.read(&storage_key(key))
    }

    /// Objects of `kind` (in `namespace`, or all), in key order.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Value>, StoreError> {
        list_table(&*self.objects, kind, namespace)
    }

    /// Objects of `kind` (in `namespace`, or all) whose stored JSON contains `needle`
    /// (a uid, say): the others are skipped before they are decoded, so finding the few
    /// objects that name another stays cheap in a large store.
    pub fn list_containing(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        needle: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let (start, end) = prefix_range(kind, namespace);
        let mut out = Vec::new();
        for entry in self.objects.range(start.as_str()..end.as_str())? {
            let (k, v) = entry?;
            if finder.find(v.value()).is_some() {
                out.push(decode(k.value(), v.value())?);
            }
        }
        Ok(out)
    }

    /// Creates an object; refused if it exists.
    pub fn create(&mut self, object: &Object) -> Result<Value, StoreError> {
        let key = storage_key(&object.key());
        if self.read(&key)?.is_some() {
            return Err(StoreError::AlreadyExists(object.key().to_string()));
        }
        self.rv += 1;
        let mut value = object.raw.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in DELETION_FIELDS {
                meta.remove(f);
            }
            meta.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            meta.insert("generation".into(), Value::from(1));
            meta.insert(
                "creationTimestamp".into(),
                Value::String(creation_timestamp().to_string()),
            );
        }
        self.store(&key, &value, EventType::Added)?;
        Ok(value)
    }

    /// Replaces an object's spec and metadata (its status is kept). With `expect`, the
    /// stored resourceVersion must equal it. Returns the stored object and whether
    /// anything changed (an identical write stores nothing).
    pub fn replace(
        &mut self,
        object: &Object,
        expect: Option<u64>,
    ) -> Result<(Value, bool), StoreError> {
        let key = storage_key(&object.key());
        let Some(current) = self.read(&key)? else {
            return Err(StoreError::NotFound(object.key().to_string()));
        };
        let current_rv = resource_version(&current);
        if let Some(given) = expect
            && given != current_rv
        {
            return Err(StoreError::Conflict {
                key: object.key().to_string(),
                given,
                current: current_rv,
            });
        }
        let mut value = object.raw.clone();
        let meta_of = |v: &Value, f: &str| v.pointer(&format!("/metadata/{f}")).cloned();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            let kept = ["uid", "creationTimestamp", "generation", "resourceVersion"];
            for f in kept.into_iter().chain(DELETION_FIELDS) {
                match meta_of(&current, f) {
                    Some(v) => meta.insert(f.into(), v),
                    None => meta.remove(f),
                };
            }
        }
        if is_deleting(&current) {
            let held = finalizers(&current);
            let added: Vec<&str> = finalizers(&value)
                .into_iter()
                .filter(|f| !held.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(StoreError::Forbidden {
                    key: object.key().to_string(),
                    field: "metadata.finalizers".into(),
                    message: format!(
                        "no new finalizers can be added while the object is being deleted, found new finalizers {added:?}"
                    ),
                });
            }
        }
        match current.get("status") {
            Some(s) => {
                if let Some(o) = value.as_object_mut() {
                    o.insert("status".into(), s.clone());
                }
            }
            None => {
                if let Some(o) = value.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if value == current {
            return Ok((current, false));
        }
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bump = spec_part(&value) != spec_part(&current);
        self.rv += 1;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            meta.insert(
                "generation".into(),
                Value::from(if bump { generation + 1 } else { generation }),
            );
        }
        self.store(&key, &value, EventType::Modified)?;
        Ok((value, true))
    }

    /// The stored object at `key` (with its storage key), which must be at resourceVersion
    /// `expect` when one is given.
    fn current(&self, key: &ObjectKey, expect: Option<u64>) -> Result<(String, Value), StoreError> {
        let skey = storage_key(key);
        let Some(current) = self.read(&skey)? else {
            return Err(StoreError::NotFound(key.to_string()));
        };
        let current_rv = resource_version(&current);
        if let Some(given) = expect
            && given != current_rv
        {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                given,
                current: current_rv,
            });
        }
        Ok((skey, current))
    }

    /// Replaces an object's status only.
    pub fn replace_status(
        &mut self,
        key: &ObjectKey,
        status: Value,
        expect: Option<u64>,
    ) -> Result<Value, StoreError> {
        let (skey, mut current) = self.current(key, expect)?;
        if current.get("status") == Some(&status) {
            return Ok(current);
        }
        self.rv += 1;
        if let Some(o) = current.as_object_mut() {
            o.insert("status".into(), status);
        }
        if let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.store(&skey, &current, EventType::Modified)?;
        Ok(current)
    }

    /// Marks an object held by finalizers as being deleted: sets `deletionTimestamp`
    /// (once; a second delete changes nothing) and bumps `generation`, as the API
    /// server does. The object goes when a write removes its last finalizer.
    pub fn mark_deleting(
        &mut self,
        key: &ObjectKey,
        expect: Option<u64>,
    ) -> Result<Value, StoreError> {
        let (skey, mut current) = self.current(key, expect)?;
        if is_deleting(&current) {
            return Ok(current);
        }
        self.rv += 1;
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        if let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("deletionTimestamp".into(), Value::String(now.to_string()));
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            meta.insert("generation".into(), Value::from(generation + 1));
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.store(&skey, &current, EventType::Modified)?;
        Ok(current)
    }

    /// Deletes an object.
    pub fn delete(&mut self, key: &ObjectKey, expect: Option<u64>) -> Result<Value, StoreError> {
        let (skey, current) = self.current(key, expect)?;
        self.objects.remove(skey.as_str())?;
        self.rv += 1;
        let mut gone = current;
        if let Some(meta) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.events.push(WatchEvent {
            kind: EventType::Deleted,
            object: gone.clone(),
            resource_version: self.rv,
        });
        Ok(gone)
    }

    /// The store's version as of this transaction's writes so far.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }
}

/// The key range of `kind` (in `namespace`, or all): keys share the prefix and sort
/// together; the range ends at the next prefix.
fn prefix_range(kind: Kind, namespace: Option<&str>) -> (String, String) {
    let prefix = match namespace {
        Some(ns) => format!("{}/{ns}/", kind.storage_name()),
        None => format!("{}/", kind.storage_name()),
    };
    let mut end = prefix.clone();
    end.pop();
    end.push(char::from(prefix.as_bytes()[prefix.len() - 1] + 1));
    (prefix, end)
}

fn list_table<T>(table: &T, kind: Kind, namespace: Option<&str>) -> Result<Vec<Value>, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let (prefix, end) = prefix_range(kind, namespace);
    let mut out = Vec::new();
    for entry in table.range(prefix.as_str()..end.as_str())? {
        let (k, v) = entry?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// Opens the database file again (after a write error).
pub type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// How much change history watches can replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most events.
    pub events: u64,
    /// Most bytes of events.
    pub bytes: u64,
    /// Oldest event kept.
    pub age: std::time::Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            events: HISTORY,
            bytes: HISTORY_BYTES,
            age: HISTORY_AGE,
        }
    }
}

/// Drops the oldest events while the history holds more events or bytes than `limits`
/// allow, or events from before `cutoff` (unix ms). Returns the bytes still held.
fn prune_history(
    history: &mut redb::Table<'_, u64, &[u8]>,
    sizes: &mut redb::Table<'_, u64, (u64, u64)>,
    newest: u64,
    mut bytes: u64,
    cutoff: u64,
    limits: HistoryLimits,
) -> Result<u64, StoreError> {
    let mut drop_below = None;
    for entry in sizes.iter()? {
        let (rv, meta) = entry?;
        let (rv, (at, size)) = (rv.value(), meta.value());
        let count = newest.saturating_sub(rv) + 1;
        if count <= limits.events && bytes <= limits.bytes && at >= cutoff {
            break;
        }
        bytes = bytes.saturating_sub(size);
        drop_below = Some(rv + 1);
    }
    if let Some(end) = drop_below {
        history.retain_in(..end, |_, _| false)?;
        sizes.retain_in(..end, |_, _| false)?;
    }
    Ok(bytes)
}

/// The store.
pub struct Store {
    db: std::sync::RwLock<Database>,
    opener: Opener,
    /// Set when a write failed in the database (a full disk, an I/O error): redb then
    /// refuses reads and writes until it is opened again, which the next use tries.
    broken: std::sync::Mutex<Option<String>>,
    /// Why the last write (or dry run) failed in the database; cleared only when a
    /// write lands, so readiness never reports a store that has not shown it writes.
    write_failure: std::sync::Mutex<Option<String>>,
    history: std::sync::Mutex<HistoryLimits>,
    events: broadcast::Sender<WatchEvent>,
    /// Held by a write from its start until its changes are broadcast, so watches get
    /// changes in resourceVersion order (redb orders the commits, not the broadcasts).
    publishing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store file at `path`, or creates it when there is none. A file that is
    /// there but empty, or holds no Lanes store, is refused (see [`Store::recover`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let owned = path.to_path_buf();
        Store::open_with(path, Box::new(move || Database::create(&owned)))
    }

    /// Like [`Store::open`], with the database opened by `opener` (a fault-injecting
    /// storage backend, in tests).
    pub fn open_with(path: &Path, opener: Opener) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        }
        let existing = match std::fs::metadata(path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StoreError::Db(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let damaged = |what: String| {
            StoreError::Damaged(format!(
                "the store {} {what}: refusing to start on it (lanes up --recover moves it aside and starts an empty store)",
                path.display()
            ))
        };
        if existing == Some(0) {
            return Err(damaged(
                "is empty (0 bytes), so every object would be gone".into(),
            ));
        }
        let db = match opener() {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.display().to_string()));
            }
            Err(e) if existing.is_some() => return Err(damaged(format!("cannot be opened ({e})"))),
            Err(e) => return Err(e.into()),
        };
        let wtx = db.begin_write()?;
        {
            wtx.open_table(OBJECTS)?;
            let mut meta = wtx.open_table(META)?;
            wtx.open_table(EVENTS)?;
            wtx.open_table(EVENT_META)?;
            let format = meta.get("format")?.map(|v| v.value());
            match format {
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(damaged(format!(
                        "has format {other}; this build reads {FORMAT}"
                    )));
                }
                None if existing.is_some() => {
                    return Err(damaged("has no Lanes format marker".into()));
                }
                None => {
                    meta.insert("format", FORMAT)?;
                }
            }
        }
        wtx.commit()?;
        let (events, _) = broadcast::channel(4096);
        Ok(Store {
            db: std::sync::RwLock::new(db),
            opener,
            broken: std::sync::Mutex::new(None),
            write_failure: std::sync::Mutex::new(None),
            history: std::sync::Mutex::new(HistoryLimits::default()),
            events,
            publishing: std::sync::Mutex::new(()),
        })
    }

    /// The database, for reading or writing.
    /// The database, opened again first if a failure left it unusable (redb refuses
    /// reads as well as writes after an I/O error).
    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Database>, StoreError> {
        self.reopen_if_broken()?;
        self.db
            .read()
            .map_err(|_| StoreError::Db("the store's lock is poisoned".into()))
    }

    /// The history watches can replay.
    pub fn history_limits(&self) -> HistoryLimits {
        self.history.lock().map(|h| *h).unwrap_or_default()
    }

    /// Sets the history watches can replay (applied from the next write on).
    pub fn set_history_limits(&self, limits: HistoryLimits) {
        if let Ok(mut h) = self.history.lock() {
            *h = limits;
        }
    }

    /// Why writes fail, while they do (`None`: the store takes writes): set by a write
    /// that failed in the database, cleared by the next one that lands.
    pub fn unready(&self) -> Option<String> {
        self.write_failure.lock().ok().and_then(|b| b.clone())
    }

    /// After a failed write, opens the database again so writes can go on once the
    /// cause is gone (space freed).
    fn reopen_if_broken(&self) -> Result<(), StoreError> {
        let Ok(mut broken) = self.broken.lock() else {
            return Err(StoreError::Db("the store's lock is poisoned".into()));
        };
        let Some(why) = broken.clone() else {
            return Ok(());
        };
        let mut db = self
            .db
            .write()
            .map_err(|_| StoreError::Db("the store's lock is poisoned".into()))?;
        // redb holds the file until the old handle is gone: swap in a placeholder first.
        // The placeholder has no tables, so until a reopen succeeds reads fail too
        // (an error, never an empty store).
        let placeholder =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        drop(std::mem::replace(&mut *db, placeholder));
        match (self.opener)() {
            Ok(fresh) => {
                *db = fresh;
                tracing::info!(after = %why, "store reopened; writes go on");
                *broken = None;
                Ok(())
            }
            Err(e) => Err(StoreError::Db(format!(
                "the store is not writable ({why}) and cannot be opened again: {e}"
            ))),
        }
    }

    /// Moves a damaged store file aside (to `<file>.damaged-<unix seconds>`) and opens
    /// a new, empty store in its place: `lanes up --recover`. Returns where the old file
    /// went, if there was one.
    pub fn recover(path: &Path) -> Result<(Store, Option<std::path::PathBuf>), StoreError> {
        let moved = if path.exists() {
            let secs = jiff::Timestamp::now().as_second();
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".damaged-{secs}"));
            let aside = std::path::PathBuf::from(aside);
            std::fs::rename(path, &aside).map_err(|e| {
                StoreError::Db(format!("cannot move {} aside: {e}", path.display()))
            })?;
            Some(aside)
        } else {
            None
        };
        Ok((Store::open(path)?, moved))
    }

    /// Runs `f` in one write transaction and commits it durably; an error from `f`
    /// discards everything it did. Changes are broadcast to watches after the commit.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Txn<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let result = self.note_failure(self.write_once(f));
        if result.is_ok()
            && let Ok(mut failure) = self.write_failure.lock()
        {
            *failure = None;
        }
        result
    }

    /// Marks the store broken when `result` is a database failure (an I/O error such
    /// as a full disk), so the next write or dry run opens it again.
    fn note_failure<R>(&self, result: Result<R, StoreError>) -> Result<R, StoreError> {
        if let Err(StoreError::Db(why)) = &result {
            tracing::error!(error = %why, "store write failed; it is reopened at the next use");
            for flag in [&self.broken, &self.write_failure] {
                if let Ok(mut flag) = flag.lock() {
                    *flag = Some(why.clone());
                }
            }
        }
        result
    }

    /// Runs `f` as [`Store::write`] would, then discards everything it did: what a
    /// write would answer, with nothing stored and nothing broadcast (`dryRun=All`).
    pub fn dry_run<R>(
        &self,
        f: impl FnOnce(&mut Txn<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.note_failure(self.dry_run_once(f))
    }

    fn dry_run_once<R>(
        &self,
        f: impl FnOnce(&mut Txn<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let db = self.db()?;
        let wtx = db.begin_write()?;
        let result = {
            let mut objects = wtx.open_table(OBJECTS)?;
            let meta = wtx.open_table(META)?;
            let rv = meta.get("rv")?.map(|v| v.value()).unwrap_or(0);
            let mut txn = Txn {
                objects: &mut objects,
                rv,
                events: Vec::new(),
            };
            f(&mut txn)
        };
        wtx.abort()?;
        result
    }

    fn write_once<R>(
        &self,
        f: impl FnOnce(&mut Txn<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let _in_order = self
            .publishing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let db = self.db()?;
        let mut wtx = db.begin_write()?;
        wtx.set_durability(Durability::Immediate)?;
        let (result, events) = {
            let mut objects = wtx.open_table(OBJECTS)?;
            let mut meta = wtx.open_table(META)?;
            let mut history = wtx.open_table(EVENTS)?;
            let rv = meta.get("rv")?.map(|v| v.value()).unwrap_or(0);
            let mut txn = Txn {
                objects: &mut objects,
                rv,
                events: Vec::new(),
            };
            let result = f(&mut txn)?;
            let (rv_after, events) = (txn.rv, txn.events);
            let mut sizes = wtx.open_table(EVENT_META)?;
            let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
            let mut bytes_held = meta.get("history_bytes")?.map(|v| v.value()).unwrap_or(0);
            for e in &events {
                let bytes = serde_json::to_vec(e)?;
                history.insert(e.resource_version, bytes.as_slice())?;
                sizes.insert(e.resource_version, (now_ms, bytes.len() as u64))?;
                bytes_held += bytes.len() as u64;
            }
            if rv_after != rv {
                meta.insert("rv", rv_after)?;
                let limits = self.history_limits();
                let cutoff = now_ms.saturating_sub(limits.age.as_millis() as u64);
                bytes_held = prune_history(
                    &mut history,
                    &mut sizes,
                    rv_after,
                    bytes_held,
                    cutoff,
                    limits,
                )?;
                meta.insert("history_bytes", bytes_held)?;
            }
            (result, events)
        };
        wtx.commit()?;
        for e in events {
            let _ = self.events.send(e);
        }
        Ok(result)
    }

    /// The object with `key`, if stored.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let rtx = self.db()?.begin_read()?;
        let table = rtx.open_table(OBJECTS)?;
        let skey = storage_key(key);
        match table.get(skey.as_str())? {
            Some(b) => Ok(Some(decode(&skey, b.value())?)),
            None => Ok(None),
        }
    }

    /// Objects of `kind` (in `namespace`, or all) and the store's version they reflect.
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        let rtx = self.db()?.begin_read()?;
        let table = rtx.open_table(OBJECTS)?;
        let meta = rtx.open_table(META)?;
        let rv = meta.get("rv")?.map(|v| v.value()).unwrap_or(0);
        Ok((list_table(&table, kind, namespace)?, rv))
    }

    /// The store's current version.
    pub fn resource_version(&self) -> Result<u64, StoreError> {
        let rtx = self.db()?.begin_read()?;
        let meta = rtx.open_table(META)?;
        Ok(meta.get("rv")?.map(|v| v.value()).unwrap_or(0))
    }

    /// A watch from `since`: the kept changes after it, and a receiver of the changes
    /// that follow (skip those at or below the last replayed version).
    pub fn watch(
        &self,
        since: u64,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), StoreError> {
        let rx = self.events.subscribe();
        let rtx = self.db()?.begin_read()?;
        let meta = rtx.open_table(META)?;
        let current = meta.get("rv")?.map(|v| v.value()).unwrap_or(0);
        if since > current {
            return Err(StoreError::Invalid(format!(
                "resourceVersion {since} is ahead of the store ({current})"
            )));
        }
        let history = rtx.open_table(EVENTS)?;
        let oldest = history.first()?.map(|(k, _)| k.value());
        if since < current && oldest.is_none_or(|o| o > since + 1) {
            return Err(StoreError::Gone(since));
        }
        let mut past = Vec::new();
        for entry in history.range(since + 1..)? {
            let (k, v) = entry?;
            let mut e: WatchEvent = serde_json::from_slice(v.value())?;
            e.resource_version = k.value();
            past.push(e);
        }
        Ok((past, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        Object::from_value(v).unwrap()
    }

    fn svc(name: &str, port: u16) -> Object {
        obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"ports": [{"port": port}], "selector": {"app": name}}}),
        )
    }

    /// A file backend that cannot grow while `full` is set, as on a full disk.
    #[derive(Debug)]
    struct FullDisk {
        file: redb::backends::FileBackend,
        full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl FullDisk {
        /// A full disk refuses what would grow the file; blocks it has are rewritten.
        fn check(&self, end: u64) -> std::io::Result<()> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst)
                && end > redb::StorageBackend::len(&self.file)?
            {
                return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            Ok(())
        }
    }

    impl redb::StorageBackend for FullDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check(len)?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check(offset + data.len() as u64)?;
            self.file.write(offset, data)
        }
    }

    #[test]
    fn after_a_full_disk_the_store_says_so_and_takes_writes_again_once_space_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, f) = (path.clone(), full.clone());
        let opener: Opener = Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
            let backend = FullDisk {
                file: redb::backends::FileBackend::new(file)?,
                full: f.clone(),
            };
            Database::builder().create_with_backend(backend)
        });
        let store = Store::open_with(&path, opener).unwrap();
        store.write(|t| t.create(&svc("a", 80))).unwrap();
        assert_eq!(store.unready(), None);
        // Larger than any free page the file has: it must grow to take it.
        let big = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "b", "annotations": {"pad": "x".repeat(256 * 1024)}},
            "spec": {"ports": [{"port": 80}]}}));
        full.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(store.write(|t| t.create(&big)).is_err());
        assert!(store.unready().is_some(), "not ready while writes fail");
        let (names, _) = store.list(Kind::Service, None).unwrap();
        assert_eq!(names.len(), 1, "reads go on while the disk is full");
        assert!(
            store.unready().is_some(),
            "a read does not make the store ready"
        );
        assert!(store.write(|t| t.create(&big)).is_err(), "still full");
        assert!(store.dry_run(|t| t.create(&svc("c", 80))).is_ok());
        assert!(
            store.unready().is_some(),
            "a dry run does not make it ready"
        );
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        store.write(|t| t.create(&big)).unwrap();
        assert_eq!(store.unready(), None, "ready again once space is back");
        let (names, _) = store.list(Kind::Service, None).unwrap();
        assert_eq!(names.len(), 2, "nothing lost: {names:?}");
    }

    #[test]
    fn the_history_is_bounded_by_count_bytes_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        store.set_history_limits(HistoryLimits {
            events: 5,
            bytes: u64::MAX,
            age: day,
        });
        for i in 0..20 {
            store
                .write(|t| t.create(&svc(&format!("c{i}"), 80)))
                .unwrap();
        }
        assert!(matches!(store.watch(10), Err(StoreError::Gone(10))));
        assert_eq!(store.watch(15).unwrap().0.len(), 5, "the last five replay");
        // Bytes: each event is a few hundred bytes; 1,000 bytes hold two or three.
        store.set_history_limits(HistoryLimits {
            events: 1_000,
            bytes: 1_000,
            age: day,
        });
        store.write(|t| t.create(&svc("b", 80))).unwrap();
        let kept = store
            .watch(store.resource_version().unwrap() - 1)
            .unwrap()
            .0
            .len();
        assert_eq!(kept, 1);
        assert!(matches!(store.watch(17), Err(StoreError::Gone(_))));
        // Age: with no age allowed, an event is gone by the next write a moment later.
        store.set_history_limits(HistoryLimits {
            events: 1_000,
            bytes: u64::MAX,
            age: std::time::Duration::ZERO,
        });
        store.write(|t| t.create(&svc("x", 80))).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.write(|t| t.create(&svc("y", 80))).unwrap();
        let rv = store.resource_version().unwrap();
        assert!(matches!(store.watch(rv - 2), Err(StoreError::Gone(_))));
        assert_eq!(store.watch(rv - 1).unwrap().0.len(), 1);
    }

    #[test]
    fn an_empty_or_foreign_file_is_refused_and_recover_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        std::fs::write(&path, b"").unwrap();
        let e = Store::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Damaged(_)), "{e}");
        assert!(e.to_string().contains("is empty") && e.to_string().contains("--recover"));
        // A redb file with no Lanes marker.
        std::fs::remove_file(&path).unwrap();
        drop(Database::create(&path).unwrap());
        let e = Store::open(&path).unwrap_err();
        assert!(e.to_string().contains("no Lanes format marker"), "{e}");
        let (store, aside) = Store::recover(&path).unwrap();
        assert!(aside.unwrap().exists());
        store.write(|t| t.create(&svc("a", 80))).unwrap();
        drop(store);
        assert!(
            Store::open(&path)
                .unwrap()
                .get(&svc("a", 80).key())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_flipped_byte_is_reported_never_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = Store::open(&path).unwrap();
        store.write(|t| t.create(&svc("a", 80))).unwrap();
        drop(store);
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            {
                let mut t = wtx.open_table(OBJECTS).unwrap();
                let mut bytes = t
                    .get("Service/default/a")
                    .unwrap()
                    .unwrap()
                    .value()
                    .to_vec();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                t.insert("Service/default/a", bytes.as_slice()).unwrap();
            }
            wtx.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let key = svc("a", 80).key();
        assert!(matches!(store.get(&key), Err(StoreError::Corrupt { .. })));
        let e = store.list(Kind::Service, None).unwrap_err();
        assert!(
            e.to_string().contains("Service/default/a") && e.to_string().contains("damaged"),
            "{e}"
        );
    }

    #[test]
    fn an_object_over_the_limit_is_refused_and_nothing_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let big = "x".repeat(MAX_OBJECT_BYTES);
        let o = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "big", "annotations": {"a": big}},
            "spec": {"ports": [{"port": 80}]}}));
        let e = store.write(|t| t.create(&o)).unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { .. }), "{e}");
        assert!(store.get(&o.key()).unwrap().is_none());
        assert_eq!(store.resource_version().unwrap(), 0);
    }

    #[test]
    fn concurrent_writes_are_broadcast_in_resource_version_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let mut rx = store.events.subscribe();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store
                            .write(|t| t.create(&svc(&format!("w{w}-{i}"), 80)))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(e.resource_version);
        }
        assert_eq!(seen, (1..=400).collect::<Vec<u64>>());
    }

    #[test]
    fn a_delete_of_an_object_held_by_finalizers_marks_it_and_keeps_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let held = |finalizers: Value| {
            obj(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "a", "finalizers": finalizers,
                             "deletionTimestamp": "2020-01-01T00:00:00Z"},
                "spec": {"ports": [{"port": 80}]}}))
        };
        let created = store.write(|t| t.create(&held(json!(["x/y"])))).unwrap();
        assert!(
            !is_deleting(&created),
            "a client cannot create an object as deleted"
        );
        let key = held(json!([])).key();
        let marked = store.write(|t| t.mark_deleting(&key, None)).unwrap();
        assert!(is_deleting(&marked) && !is_finalised(&marked));
        assert_eq!(marked["metadata"]["generation"], 2);
        let again = store.write(|t| t.mark_deleting(&key, None)).unwrap();
        assert_eq!(again, marked, "a second delete changes nothing");
        // No finalizer may be added now; the mark survives writes that omit it.
        let e = store
            .write(|t| t.replace(&held(json!(["x/y", "other"])), None))
            .unwrap_err();
        assert!(
            e.to_string().contains("metadata.finalizers: Forbidden")
                && e.to_string().contains("other"),
            "{e}"
        );
        let mut unmarked = held(json!([]));
        if let Some(m) = unmarked.raw["metadata"].as_object_mut() {
            m.remove("deletionTimestamp");
        }
        let (released, _) = store.write(|t| t.replace(&unmarked, None)).unwrap();
        assert_eq!(
            released["metadata"]["deletionTimestamp"],
            marked["metadata"]["deletionTimestamp"]
        );
        assert!(
            is_finalised(&released),
            "the last finalizer is gone: it may go"
        );
    }

    #[test]
    fn an_istio_gateway_and_a_gateway_api_gateway_of_one_name_are_two_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let istio = obj(
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra"},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}),
        );
        let kube = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra"},
            "spec": {"gatewayClassName": "lanes",
                     "listeners": [{"name": "web", "port": 80, "protocol": "HTTP"}]}}),
        );
        store.write(|t| t.create(&istio)).unwrap();
        store.write(|t| t.create(&kube)).unwrap();
        for kind in [Kind::Gateway, Kind::KubeGateway] {
            let (listed, _) = store.list(kind, Some("infra")).unwrap();
            assert_eq!(listed.len(), 1, "{kind:?}");
            assert_eq!(Kind::of_value(&listed[0]), Some(kind));
        }
    }

    #[test]
    fn create_update_status_delete_with_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let created = store.write(|t| t.create(&svc("a", 80))).unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created["metadata"]["uid"].as_str().unwrap().len() > 10);
        assert!(matches!(
            store.write(|t| t.create(&svc("a", 80))),
            Err(StoreError::AlreadyExists(_))
        ));

        // Unchanged: nothing written.
        let (v, changed) = store.write(|t| t.replace(&svc("a", 80), None)).unwrap();
        assert!(!changed);
        assert_eq!(v["metadata"]["resourceVersion"], "1");
        // Spec change: generation bumps.
        let (v, changed) = store.write(|t| t.replace(&svc("a", 81), Some(1))).unwrap();
        assert!(changed);
        assert_eq!(v["metadata"]["resourceVersion"], "2");
        assert_eq!(v["metadata"]["generation"], 2);
        assert_eq!(v["metadata"]["uid"], created["metadata"]["uid"]);
        // Stale version: conflict, nothing written.
        let err = store
            .write(|t| t.replace(&svc("a", 82), Some(1)))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    given: 1,
                    current: 2,
                    ..
                }
            ),
            "{err}"
        );
        // Status: no generation bump; later spec writes keep it.
        let key = svc("a", 80).key();
        let v = store
            .write(|t| t.replace_status(&key, json!({"x": 1}), None))
            .unwrap();
        assert_eq!(v["metadata"]["generation"], 2);
        let (v, _) = store.write(|t| t.replace(&svc("a", 83), None)).unwrap();
        assert_eq!(v["status"]["x"], 1);
        let gone = store.write(|t| t.delete(&key, None)).unwrap();
        assert_eq!(gone["metadata"]["name"], "a");
        assert!(store.get(&key).unwrap().is_none());
    }

    #[test]
    fn a_failed_transaction_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let r: Result<(), _> = store.write(|t| {
            t.create(&svc("a", 80))?;
            t.create(&svc("b", 80))?;
            Err(StoreError::Invalid("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(store.list(Kind::Service, None).unwrap().0.len(), 0);
        assert_eq!(store.resource_version().unwrap(), 0);
    }

    #[test]
    fn lists_by_namespace_and_watches_from_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.write(|t| t.create(&svc("a", 80))).unwrap();
        let other = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "namespace": "defaultx"}, "spec": {"ports": [{"port": 1}]}}));
        store.write(|t| t.create(&other)).unwrap();
        assert_eq!(
            store.list(Kind::Service, Some("default")).unwrap().0.len(),
            1
        );
        assert_eq!(store.list(Kind::Service, None).unwrap().0.len(), 2);
        assert_eq!(store.list(Kind::Pod, None).unwrap().0.len(), 0);
        let (past, mut rx) = store.watch(1).unwrap();
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].kind, EventType::Added);
        store
            .write(|t| t.delete(&svc("a", 80).key(), None))
            .unwrap();
        let live = rx.try_recv().unwrap();
        assert_eq!(live.kind, EventType::Deleted);
        assert_eq!(live.resource_version, 3);
        assert!(matches!(store.watch(99), Err(StoreError::Invalid(_))));
    }
}
