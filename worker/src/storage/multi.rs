//! Several storages at once (`--storage a,b`): [`MultiStorage`] writes every object to all of
//! them in parallel and reads from the first that has a good copy.
//!
//! A backup written through it exists on every member or on none: its manifest, the commit
//! point, is taken back from the members that got it when any member fails to store or sync it.
//! A restore finds a backup that exists on any member and takes each object from the first
//! member whose copy is there and intact.

use super::{NameLock, ObjectInfo, Storage};
use crate::error::{Error, ErrorKind, Result, Status};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One named member.
struct Member {
    name: String,
    storage: Arc<dyn Storage>,
}

/// A storage that mirrors writes to all its members and reads from the first that can serve.
///
/// - Writes (`put`, `sync`, `delete`, `tidy`, `prepare`) go to every member in parallel and fail
///   if any member fails, with that member named: `storage 'offsite' (s3://bucket/prefix/): ...`.
/// - Reads (`get`, `get_range`, `get_checked`) try the members in order; a missing, unreadable or
///   (for `get_checked`) damaged copy sends them to the next one.
/// - `list` is the union of the members' listings; `check_container` succeeds when any member's
///   container exists. Readers need one copy; a backup needs all, which `prepare` ensures.
pub struct MultiStorage {
    members: Vec<Member>,
}

/// Whether `key` is a manifest, the object whose presence makes a backup exist.
fn is_manifest(key: &str) -> bool {
    key == "manifest.json" || key.ends_with("/manifest.json")
}

impl MultiStorage {
    /// Mirrors over `members`, each a configured storage's name and its backend, in the order
    /// reads try them (the first is the primary).
    ///
    /// # Panics
    ///
    /// With no member: the caller resolves `--storage` to at least one storage.
    pub fn new(members: Vec<(String, Arc<dyn Storage>)>) -> Self {
        assert!(
            !members.is_empty(),
            "MultiStorage needs at least one storage"
        );
        MultiStorage {
            members: members
                .into_iter()
                .map(|(name, storage)| Member { name, storage })
                .collect(),
        }
    }

    /// The members' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    /// `storage 'name' (location)`, how messages name a member.
    fn label(m: &Member) -> String {
        format!("storage '{}' ({})", m.name, m.storage.describe(""))
    }

    /// `e` with the member that returned it named in front.
    fn named(m: &Member, e: Error) -> Error {
        Error {
            message: format!("{}: {}", Self::label(m), e.message),
            ..e
        }
    }

    /// Runs `f` on every member at once (the first on this thread); one result per member.
    fn on_all<T: Send>(&self, f: impl Fn(&dyn Storage) -> Result<T> + Sync) -> Vec<Result<T>> {
        let f = &f;
        std::thread::scope(|s| {
            let others: Vec<_> = self.members[1..]
                .iter()
                .map(|m| s.spawn(move || f(&*m.storage)))
                .collect();
            let mut results = vec![f(&*self.members[0].storage)];
            for (h, m) in others.into_iter().zip(&self.members[1..]) {
                results.push(h.join().unwrap_or_else(|_| {
                    Err(Error::failure(format!(
                        "{}: the operation panicked",
                        Self::label(m)
                    )))
                }));
            }
            results
        })
    }

    /// `Ok` when every member succeeded; otherwise the first member's failure, naming it, with
    /// the other failures appended.
    fn all_ok(&self, results: Vec<Result<()>>) -> Result<()> {
        let mut failures = self
            .members
            .iter()
            .zip(results)
            .filter_map(|(m, r)| r.err().map(|e| Self::named(m, e)));
        let Some(mut first) = failures.next() else {
            return Ok(());
        };
        for other in failures {
            first.message.push_str("; also ");
            first.message.push_str(&other.message);
        }
        Err(first)
    }

    /// One error out of every member's failure to serve `key`: `NotFound` when it is missing
    /// everywhere; otherwise the kind of the first real failure, transient when any failure is
    /// (a retry may find a copy), listing every member's error.
    fn combine(&self, key: &str, errors: Vec<(&Member, Error)>) -> Error {
        let all_missing = errors.iter().all(|(_, e)| e.kind == ErrorKind::NotFound);
        let (kind, status) = match errors.iter().find(|(_, e)| e.kind != ErrorKind::NotFound) {
            None => (ErrorKind::NotFound, Status::Permanent),
            Some((_, e)) if errors.iter().any(|(_, e)| e.is_transient()) => {
                (e.kind, Status::Transient)
            }
            Some((_, e)) => (e.kind, Status::Permanent),
        };
        let detail = errors
            .iter()
            .map(|(m, e)| format!("{}: {}", Self::label(m), e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let what = if key.is_empty() {
            "the container".to_string()
        } else {
            key.to_string()
        };
        let message = if all_missing {
            format!("{what} is missing on every storage: {detail}")
        } else {
            format!("no storage could provide {what}: {detail}")
        };
        Error::new(kind, message).with_status(status)
    }

    /// The first member's successful answer to `f`, in order; logs members that fail with
    /// anything but "not found".
    fn first_ok<T>(&self, key: &str, f: impl Fn(&dyn Storage) -> Result<T>) -> Result<T> {
        let mut errors = Vec::new();
        for m in &self.members {
            match f(&*m.storage) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.kind != ErrorKind::NotFound {
                        tracing::warn!(
                            storage = %m.name,
                            object = %m.storage.describe(key),
                            error = %e,
                            "cannot read from this storage; trying the next"
                        );
                    }
                    errors.push((m, e));
                }
            }
        }
        Err(self.combine(key, errors))
    }

    /// Takes back `keys` (manifests of a backup that failed) from every member, best effort:
    /// the failure being reported matters more than a failure to clean up, which is logged.
    fn withdraw(&self, keys: &[&str], from: &[bool]) {
        for (m, &has) in self.members.iter().zip(from) {
            if !has {
                continue;
            }
            for key in keys {
                if let Err(e) = m.storage.delete(key) {
                    tracing::warn!(
                        storage = %m.name,
                        object = %m.storage.describe(key),
                        error = %e,
                        "cannot remove the manifest of a failed backup; delete it by hand or prune"
                    );
                }
            }
        }
    }
}

impl Storage for MultiStorage {
    /// Stores on every member at once. A manifest that could not be stored on every member is
    /// removed from those that stored it, so no storage shows a backup that failed.
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let results = self.on_all(|s| s.put(key, data));
        if is_manifest(key) && results.iter().any(|r| r.is_err()) {
            let stored: Vec<bool> = results.iter().map(|r| r.is_ok()).collect();
            self.withdraw(&[key], &stored);
        }
        self.all_ok(results)
    }

    /// Syncs on every member at once. When this was a manifest's sync and any member failed, the
    /// backup fails: its manifest is removed from every member.
    fn sync(&self, keys: &[String]) -> Result<()> {
        let results = self.on_all(|s| s.sync(keys));
        if results.iter().any(|r| r.is_err()) {
            let manifests: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|k| is_manifest(k))
                .collect();
            if !manifests.is_empty() {
                self.withdraw(&manifests, &vec![true; self.members.len()]);
            }
        }
        self.all_ok(results)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.first_ok(key, |s| s.get(key))
    }

    /// The first member's copy that passes `check`; a missing, unreadable or damaged copy sends
    /// it to the next member, and a damaged one is logged with the member named.
    fn get_checked(&self, key: &str, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let mut errors = Vec::new();
        for m in &self.members {
            let damaged = Cell::new(false);
            let checked = |data: &[u8]| {
                let r = check(data);
                damaged.set(damaged.get() || r.is_err());
                r
            };
            match m.storage.get_checked(key, &checked) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if damaged.get() || e.kind == ErrorKind::Integrity {
                        tracing::warn!(
                            storage = %m.name,
                            object = %m.storage.describe(key),
                            error = %e,
                            "damaged copy; trying the next storage"
                        );
                    } else if e.kind != ErrorKind::NotFound {
                        tracing::warn!(
                            storage = %m.name,
                            object = %m.storage.describe(key),
                            error = %e,
                            "cannot read from this storage; trying the next"
                        );
                    }
                    errors.push((m, e));
                }
            }
        }
        Err(self.combine(key, errors))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.first_ok(key, |s| s.get_range(key, offset, len))
    }

    /// The union of the members' listings by key, in key order; where members list the same key
    /// the first member's entry wins. A member that cannot list is logged and left out, so a
    /// restore still finds backups on the others; it fails only when no member can list.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut union = BTreeMap::new();
        let mut errors = Vec::new();
        for (m, r) in self.members.iter().zip(self.on_all(|s| s.list(prefix))) {
            match r {
                Ok(objects) => {
                    for o in objects {
                        union.entry(o.key.clone()).or_insert(o);
                    }
                }
                Err(e) => errors.push((m, e)),
            }
        }
        if errors.len() == self.members.len() {
            return Err(self.combine(prefix, errors));
        }
        for (m, e) in errors {
            tracing::warn!(
                storage = %m.name,
                prefix,
                error = %e,
                "cannot list this storage; using the others"
            );
        }
        Ok(union.into_values().collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let results = self.on_all(|s| s.delete(key));
        self.all_ok(results)
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        let results = self.on_all(|s| s.tidy(prefix));
        self.all_ok(results)
    }

    /// The first member's location, followed by the other members' names:
    /// `/srv/backups/key (+ storage 'offsite')`.
    fn describe(&self, key: &str) -> String {
        let first = self.members[0].storage.describe(key);
        match &self.members[1..] {
            [] => first,
            [other] => format!("{first} (+ storage '{}')", other.name),
            others => format!(
                "{first} (+ storages {})",
                others
                    .iter()
                    .map(|m| format!("'{}'", m.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Prepares every member: a backup is written to all of them.
    fn prepare(&self) -> Result<()> {
        let results = self.on_all(|s| s.prepare());
        self.all_ok(results)
    }

    /// Succeeds when at least one member's container exists (logging the others): readers need
    /// only one copy. A backup does not rely on it; it calls `prepare`, which needs all.
    fn check_container(&self) -> Result<()> {
        let results = self.on_all(|s| s.check_container());
        if results.iter().any(|r| r.is_ok()) {
            for (m, r) in self.members.iter().zip(results) {
                if let Err(e) = r {
                    tracing::warn!(storage = %m.name, error = %e, "storage unavailable; using the others");
                }
            }
            return Ok(());
        }
        let errors = self
            .members
            .iter()
            .zip(results)
            .filter_map(|(m, r)| r.err().map(|e| (m, e)))
            .collect();
        Err(self.combine("", errors))
    }

    /// Every member's lock, taken in member order; fails (releasing those taken) when any
    /// member's lock is held, naming that member.
    fn lock_name(&self, name_prefix: &str) -> Result<NameLock> {
        let mut locks = Vec::with_capacity(self.members.len());
        for m in &self.members {
            locks.push(
                m.storage
                    .lock_name(name_prefix)
                    .map_err(|e| Self::named(m, e))?,
            );
        }
        Ok(NameLock::merge(locks))
    }

    /// Every member's local directories, without repeats.
    fn local_dirs(&self) -> Vec<std::path::PathBuf> {
        let mut dirs = Vec::new();
        for d in self.members.iter().flat_map(|m| m.storage.local_dirs()) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::{Fault, MemoryStorage, Op};
    use crate::storage::LocalStorage;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    fn multi(names: &[&str]) -> (Vec<Arc<MemoryStorage>>, MultiStorage) {
        let mems: Vec<_> = names
            .iter()
            .map(|n| Arc::new(MemoryStorage::new(n)))
            .collect();
        let members = names
            .iter()
            .zip(&mems)
            .map(|(n, m)| (n.to_string(), m.clone() as Arc<dyn Storage>))
            .collect();
        (mems, MultiStorage::new(members))
    }

    const MANIFEST: &str = "h_n/c/0_t/manifest.json";

    /// A storage whose puts wait (up to 5 s) until `n` puts are in progress across all the
    /// gated storages sharing the gate, recording whether they all met.
    struct Gated {
        inner: MemoryStorage,
        gate: Arc<(Mutex<usize>, Condvar)>,
        n: usize,
        met: Mutex<bool>,
    }

    impl Storage for Gated {
        fn put(&self, key: &str, data: &[u8]) -> Result<()> {
            let (count, cv) = &*self.gate;
            let mut c = count.lock().unwrap();
            *c += 1;
            cv.notify_all();
            let (c, _) = cv
                .wait_timeout_while(c, Duration::from_secs(5), |c| *c < self.n)
                .unwrap();
            *self.met.lock().unwrap() = *c >= self.n;
            drop(c);
            self.inner.put(key, data)
        }
        fn sync(&self, keys: &[String]) -> Result<()> {
            self.inner.sync(keys)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            self.inner.get(key)
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.inner.get_range(key, offset, len)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key)
        }
        fn describe(&self, key: &str) -> String {
            self.inner.describe(key)
        }
        fn prepare(&self) -> Result<()> {
            self.inner.prepare()
        }
        fn check_container(&self) -> Result<()> {
            self.inner.check_container()
        }
    }

    #[test]
    fn put_writes_every_member_in_parallel() {
        let gate = Arc::new((Mutex::new(0), Condvar::new()));
        let gated: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                Arc::new(Gated {
                    inner: MemoryStorage::new(n),
                    gate: gate.clone(),
                    n: 3,
                    met: Mutex::new(false),
                })
            })
            .collect();
        let s = MultiStorage::new(
            gated
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("s{i}"), g.clone() as Arc<dyn Storage>))
                .collect(),
        );
        s.put("k", b"v").unwrap();
        for g in &gated {
            assert!(*g.met.lock().unwrap(), "puts did not overlap");
            assert_eq!(g.inner.object("k").unwrap(), b"v");
        }
    }

    #[test]
    fn failed_put_names_the_storage() {
        let (m, s) = multi(&["local", "offsite"]);
        m[1].fail(Op::Put, "data/", Fault::Permanent, 1);
        let e = s.put("h_n/c/0_t/data/00000000", b"seg").unwrap_err();
        assert!(
            e.message
                .starts_with("storage 'offsite' (mem://offsite/): "),
            "{}",
            e.message
        );
        assert!(!e.is_transient());
        // Segments stay where they landed: the engine removes the debris of a failed backup.
        assert!(m[0].object("h_n/c/0_t/data/00000000").is_some());
    }

    #[test]
    fn failures_on_several_storages_are_all_reported() {
        let (m, s) = multi(&["a", "b", "c"]);
        m[1].fail(Op::Delete, "", Fault::Transient, 1);
        m[2].fail(Op::Delete, "", Fault::Permanent, 1);
        let e = s.delete("k").unwrap_err();
        assert!(e.message.starts_with("storage 'b'"), "{}", e.message);
        assert!(e.message.contains("; also storage 'c'"), "{}", e.message);
        assert!(e.is_transient());
        assert_eq!(m[0].calls(Op::Delete), 1);
    }

    #[test]
    fn manifest_that_fails_on_one_storage_is_withdrawn_from_the_others() {
        let (m, s) = multi(&["a", "b", "c"]);
        m[1].fail(Op::Put, "manifest.json", Fault::Transient, 1);
        let e = s.put(MANIFEST, b"{}").unwrap_err();
        assert!(e.message.contains("storage 'b'"), "{}", e.message);
        assert!(e.is_transient());
        for mem in &m {
            assert!(mem.object(MANIFEST).is_none(), "{:?}", mem.keys());
        }
    }

    #[test]
    fn manifest_whose_sync_fails_is_withdrawn_everywhere() {
        let (m, s) = multi(&["a", "b"]);
        s.put(MANIFEST, b"{}").unwrap();
        m[0].fail(Op::Sync, "manifest.json", Fault::Permanent, 1);
        let e = s.sync(&[MANIFEST.to_string()]).unwrap_err();
        assert!(e.message.starts_with("storage 'a'"), "{}", e.message);
        assert!(m[0].object(MANIFEST).is_none());
        assert!(m[1].object(MANIFEST).is_none());
        // A failed sync of segments leaves them for the engine's cleanup.
        s.put("x/data/0", b"d").unwrap();
        m[1].fail(Op::Sync, "", Fault::Permanent, 1);
        assert!(s.sync(&["x/data/0".to_string()]).is_err());
        assert!(m[0].object("x/data/0").is_some());
    }

    #[test]
    fn read_falls_back_to_the_next_storage() {
        let (m, s) = multi(&["a", "b"]);
        m[1].insert("k", b"hello");
        assert_eq!(s.get("k").unwrap(), b"hello");
        assert_eq!(s.get_range("k", 1, 2).unwrap(), b"el");
        m[0].insert("k", b"HELLO");
        m[0].fail(Op::Get, "k", Fault::Transient, 1);
        assert_eq!(s.get("k").unwrap(), b"hello");
        assert_eq!(s.get("k").unwrap(), b"HELLO");
    }

    #[test]
    fn object_missing_everywhere_lists_every_storage() {
        let (m, s) = multi(&["a", "b"]);
        let e = s.get("k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("storage 'a'"), "{}", e.message);
        assert!(e.message.contains("storage 'b'"), "{}", e.message);
        m[1].fail(Op::Get, "k", Fault::Transient, 1);
        let e = s.get("k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failure);
        assert!(e.is_transient(), "a retry may find the copy on b");
    }

    #[test]
    fn checked_read_skips_damaged_copies() {
        let (m, s) = multi(&["a", "b", "c"]);
        for mem in &m[..2] {
            mem.insert("seg", b"good");
        }
        m[0].damage("seg");
        m[2].insert("seg", b"good");
        let check = |d: &[u8]| {
            if d == b"good" {
                Ok(())
            } else {
                Err(Error::integrity("seg failed its integrity check"))
            }
        };
        assert_eq!(s.get_checked("seg", &check).unwrap(), b"good");
        assert_eq!(m[2].calls(Op::Get), 0);
        m[1].damage("seg");
        m[2].damage("seg");
        let e = s.get_checked("seg", &check).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Integrity);
        assert!(e.message.contains("storage 'c'"), "{}", e.message);
        // Missing on the first, damaged on the second: still an integrity failure.
        let (m, s) = multi(&["a", "b"]);
        m[1].insert("seg", b"bad!");
        assert_eq!(
            s.get_checked("seg", &check).unwrap_err().kind,
            ErrorKind::Integrity
        );
    }

    #[test]
    fn list_is_the_union_of_the_storages() {
        let (m, s) = multi(&["a", "b"]);
        m[0].insert("p/x", b"1");
        m[0].insert("p/y", b"22");
        m[1].insert("p/y", b"333");
        m[1].insert("p/a", b"4");
        m[1].insert("q/z", b"5");
        let l = s.list("p/").unwrap();
        let keys: Vec<_> = l.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/a", "p/x", "p/y"]);
        assert_eq!(l[2].size, 2, "the first storage's entry wins");
        m[0].fail(Op::List, "", Fault::Permanent, 1);
        assert_eq!(s.list("p/").unwrap().len(), 2);
        m[0].fail(Op::List, "", Fault::Permanent, 1);
        m[1].fail(Op::List, "", Fault::Transient, 1);
        let e = s.list("p/").unwrap_err();
        assert!(e.message.contains("storage 'a'") && e.message.contains("storage 'b'"));
    }

    #[test]
    fn container_check_needs_one_storage_and_prepare_needs_all() {
        let a = Arc::new(MemoryStorage::without_container("a"));
        let b = Arc::new(MemoryStorage::new("b"));
        let s = MultiStorage::new(vec![
            ("a".into(), a.clone() as Arc<dyn Storage>),
            ("b".into(), b.clone() as Arc<dyn Storage>),
        ]);
        s.check_container().unwrap();
        b.fail(Op::CheckContainer, "", Fault::NotFound, 1);
        let e = s.check_container().unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("mem://a/"), "{}", e.message);
        b.fail(Op::Prepare, "", Fault::Permanent, 1);
        let e = s.prepare().unwrap_err();
        assert!(e.message.starts_with("storage 'b'"), "{}", e.message);
        s.prepare().unwrap();
        a.check_container().unwrap();
    }

    #[test]
    fn describe_names_the_first_location_and_the_other_storages() {
        let (_, s) = multi(&["a"]);
        assert_eq!(s.describe("k"), "mem://a/k");
        let (_, s) = multi(&["a", "b", "c"]);
        assert_eq!(s.describe("k"), "mem://a/k (+ storages 'b', 'c')");
        assert_eq!(s.names(), ["a", "b", "c"]);
    }

    #[test]
    fn locks_and_local_dirs_cover_every_storage() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let local =
            |d: &tempfile::TempDir| Arc::new(LocalStorage::new(d.path())) as Arc<dyn Storage>;
        let s = MultiStorage::new(vec![
            ("a".into(), local(&da)),
            ("b".into(), local(&db)),
            ("a2".into(), local(&da)),
        ]);
        assert_eq!(s.local_dirs().len(), 2);
        let s = MultiStorage::new(vec![("a".into(), local(&da)), ("b".into(), local(&db))]);
        let held = local(&db).lock_name("h_n").unwrap();
        let e = s.lock_name("h_n").err().expect("b is locked");
        assert_eq!(e.kind, ErrorKind::Locked);
        assert!(e.message.starts_with("storage 'b'"), "{}", e.message);
        drop(held);
        let _both = s.lock_name("h_n").unwrap();
        // Held on a as well: a second writer is refused there first.
        let e = local(&da).lock_name("h_n").err().expect("a is locked");
        assert_eq!(e.kind, ErrorKind::Locked);
    }
}
