//! Safety: hostile backups cannot write outside the restore target (ARCHITECTURE.md §3), interrupted backups
//! leave no visible backup (§2, §4), unreadable files give exit 3, `--dry-run` writes nothing (§7),
//! a full disk fails cleanly, a held lock gives exit 11, bad usage gives exit 2.

use freezer_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------
// Hostile hand-made backups
// ---------------------------------------------------------------------------------------------------

/// One entry of a crafted archive (and index).
enum Item {
    Dir(Vec<u8>),
    File(Vec<u8>, Vec<u8>),
    Symlink(Vec<u8>, Vec<u8>),
    Hardlink(Vec<u8>, Vec<u8>),
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A real unencrypted zstd backup made by the worker, whose segment and index are then replaced by
/// crafted ones (with tags and manifest_tag fixed as FORMAT.md says).
struct Crafted {
    fx: Fixture,
    dir: PathBuf,
    header: Value,
    templates: BTreeMap<String, Value>,
    target: PathBuf,
}

impl Crafted {
    fn new(name: &str) -> Crafted {
        let fx = Fixture::new(name);
        fs::write(fx.src.join("ok.txt"), b"fine\n").unwrap();
        fs::create_dir(fx.src.join("sub")).unwrap();
        std::os::unix::fs::symlink("ok.txt", fx.src.join("l")).unwrap();
        fs::write(fx.src.join("h1"), b"hard\n").unwrap();
        fs::hard_link(fx.src.join("h1"), fx.src.join("h2")).unwrap();
        let summary = fx.backup(&["--compression", "zstd", "--no-incremental"]);
        let dir = backup_dir(&summary);
        let (header, entries) = read_unencrypted_index(&dir);
        let mut templates = BTreeMap::new();
        for e in entries {
            let t = e["type"].as_str().expect("index entry type").to_string();
            templates.entry(t).or_insert(e);
        }
        for t in ["dir", "file", "symlink"] {
            assert!(
                templates.contains_key(t),
                "no {t} entry in the index: {templates:?}"
            );
        }
        if !templates.contains_key("hardlink") {
            let mut h = templates["file"].clone();
            h["type"] = "hardlink".into();
            templates.insert("hardlink".into(), h);
        }
        let target = fx.root().join("r/target");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        Crafted {
            fx,
            dir,
            header,
            templates,
            target,
        }
    }

    /// Replaces the backup's archive and index by `items` (after a root directory entry).
    fn write(&self, items: &[Item]) {
        self.write_renamed(items, &BTreeMap::new());
    }

    /// Like `write`, but the tar entries named in `tar_names` (by index path) get another name in
    /// the archive than in the index.
    fn write_renamed(&self, items: &[Item], tar_names: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let backup_id = self.header["backup_id"].clone();
        let mut tar = tar::Builder::new(Vec::new());
        let mut index = vec![self.header.clone()];
        let mut all = vec![Item::Dir(b("."))];
        all.extend(items.iter().map(|i| match i {
            Item::Dir(p) => Item::Dir(p.clone()),
            Item::File(p, d) => Item::File(p.clone(), d.clone()),
            Item::Symlink(p, t) => Item::Symlink(p.clone(), t.clone()),
            Item::Hardlink(p, t) => Item::Hardlink(p.clone(), t.clone()),
        }));
        let mut files = 0;
        for (i, item) in all.iter().enumerate() {
            let (path, kind, data, link): (&[u8], &str, &[u8], Option<&[u8]>) = match item {
                Item::Dir(p) => (p, "dir", b"", None),
                Item::File(p, d) => (p, "file", d, None),
                Item::Symlink(p, t) => (p, "symlink", b"", Some(t)),
                Item::Hardlink(p, t) => (p, "hardlink", b"", Some(t)),
            };
            // Tar entry with the raw name (the tar crate's safe setters refuse these on purpose).
            let tar_name: Vec<u8> = match tar_names.get(path) {
                Some(n) => n.clone(),
                None if path == b"." => b"./".to_vec(),
                None => path.to_vec(),
            };
            let mut h = tar::Header::new_ustar();
            {
                let u = h.as_ustar_mut().unwrap();
                assert!(tar_name.len() < 100);
                u.name[..tar_name.len()].copy_from_slice(&tar_name);
                if let Some(l) = link {
                    assert!(l.len() < 100);
                    u.linkname[..l.len()].copy_from_slice(l);
                }
            }
            h.set_mode(match kind {
                "dir" => 0o755,
                "symlink" => 0o777,
                _ => 0o644,
            });
            h.set_uid(unsafe { libc::getuid() } as u64);
            h.set_gid(unsafe { libc::getgid() } as u64);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            h.set_entry_type(match kind {
                "dir" => tar::EntryType::Directory,
                "file" => tar::EntryType::Regular,
                "symlink" => tar::EntryType::Symlink,
                _ => tar::EntryType::Link,
            });
            h.set_cksum();
            tar.append(&h, data).unwrap();

            let mut e = self.templates[kind].clone();
            let o = e.as_object_mut().unwrap();
            o.remove("xattrs");
            o.remove("incomplete");
            o.insert(
                "path".into(),
                match std::str::from_utf8(path) {
                    Ok(s) => Value::from(s),
                    Err(_) => serde_json::json!({ "hex": hex::encode(path) }),
                },
            );
            o.insert("type".into(), kind.into());
            o.insert("ino".into(), Value::from(900_000 + i as u64));
            o.insert("nlink".into(), Value::from(1));
            o.insert("mtime_ns".into(), Value::from(1_700_000_000_000_000_000u64));
            match kind {
                "file" => {
                    files += 1;
                    o.insert("size".into(), Value::from(data.len() as u64));
                    o.insert("stored_in".into(), backup_id.clone());
                    o.insert("mode".into(), Value::from(0o644));
                    o.remove("link");
                }
                "dir" => {
                    o.insert("mode".into(), Value::from(0o755));
                }
                _ => {
                    let l = link.unwrap();
                    o.insert(
                        "link".into(),
                        match std::str::from_utf8(l) {
                            Ok(s) => Value::from(s),
                            Err(_) => serde_json::json!({ "hex": hex::encode(l) }),
                        },
                    );
                    if kind == "hardlink" {
                        o.insert("size".into(), Value::from(0));
                    }
                }
            }
            index.push(e);
        }
        index[0]["entries"] = Value::from(all.len() as u64);
        let tar_bytes = tar.into_inner().unwrap();
        let mut jsonl = Vec::new();
        for line in &index {
            jsonl.extend(serde_json::to_vec(line).unwrap());
            jsonl.push(b'\n');
        }
        let index_bytes = zstd::encode_all(&jsonl[..], 3).unwrap();
        let seg = zstd::encode_all(&tar_bytes[..], 3).unwrap();

        for p in segment_paths(&self.dir) {
            fs::remove_file(p).unwrap();
        }
        fs::write(self.dir.join("data/00000000"), &seg).unwrap();
        fs::write(self.dir.join("index"), &index_bytes).unwrap();
        let mut m = read_manifest(&self.dir);
        let mut s0 = m["segments"][0].clone();
        s0["size"] = Value::from(seg.len() as u64);
        s0["raw_size"] = Value::from(tar_bytes.len() as u64);
        s0["tag"] = Value::from(sha256_hex(&seg));
        m["segments"] = Value::Array(vec![s0]);
        m["index"]["size"] = Value::from(index_bytes.len() as u64);
        m["index"]["tag"] = Value::from(sha256_hex(&index_bytes));
        m["totals"]["entries"] = Value::from(all.len() as u64);
        m["totals"]["files"] = Value::from(files);
        m["totals"]["bytes_stored"] = Value::from((seg.len() + index_bytes.len()) as u64);
        retag_unencrypted_manifest(&mut m);
        write_manifest(&self.dir, &m);
    }

    /// Everything in the test's directory except the restore target.
    fn outside(&self) -> BTreeMap<Vec<u8>, String> {
        let mut f = fingerprint(self.fx.root());
        f.retain(|k, _| !k.starts_with(b"r/target"));
        f
    }

    /// Restores the crafted backup; asserts nothing outside the target changed, the worker did not
    /// crash, and that it either failed with an error naming the hostile entry (one of `names`, as
    /// the archive spells it: a clear error says which entry was refused) or skipped the hostile
    /// entries and restored the benign one.
    #[track_caller]
    fn assert_contained(&self, names: &[&str]) -> Out {
        let before = self.outside();
        let out = self.fx.try_restore(&self.target, &[] as &[&str]);
        out.assert_no_panic();
        eprintln!("{out}");
        let after = self.outside();
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| show(k))
            .collect();
        assert!(
            changed.is_empty(),
            "the restore wrote outside its target: {changed:?}\n{out}"
        );
        if out.code() != 0 {
            assert!(
                names.iter().any(|n| out.stderr.contains(n)),
                "a refused restore should name the hostile entry (one of {names:?}):\n{out}"
            );
        } else {
            assert_eq!(
                fs::read(self.target.join("ok.txt")).ok().as_deref(),
                Some(&b"fine\n"[..]),
                "benign entry restored:\n{out}"
            );
        }
        out
    }
}

fn ok_items() -> Vec<Item> {
    vec![Item::File(b("ok.txt"), b("fine\n"))]
}

/// The crafting itself is right: a crafted backup with only benign entries restores.
#[test]
fn crafted_benign_backup_restores() {
    let c = Crafted::new("benign");
    c.write(&[
        Item::Dir(b("sub")),
        Item::File(b("ok.txt"), b("fine\n")),
        Item::File(b("sub/x.txt"), b("x\n")),
        Item::Symlink(b("l"), b("ok.txt")),
        Item::File(b("h1"), b("hard\n")),
        Item::Hardlink(b("h2"), b("h1")),
        Item::Symlink(b("abs"), b("/etc/hostname")),
        Item::Symlink(b("up"), b("..")),
    ]);
    c.fx.restore(&c.target, &[] as &[&str]);
    assert_eq!(fs::read(c.target.join("ok.txt")).unwrap(), b"fine\n");
    assert_eq!(fs::read(c.target.join("sub/x.txt")).unwrap(), b"x\n");
    assert_eq!(
        fs::read_link(c.target.join("l")).unwrap(),
        Path::new("ok.txt")
    );
    assert_eq!(
        fs::read_link(c.target.join("abs")).unwrap(),
        Path::new("/etc/hostname"),
        "symlinks may point anywhere"
    );
    assert_eq!(
        fs::read_link(c.target.join("up")).unwrap(),
        Path::new(".."),
        "symlinks may point anywhere"
    );
    let h1 = fs::metadata(c.target.join("h1")).unwrap();
    let h2 = fs::metadata(c.target.join("h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "hard link restored");
}

#[test]
fn restore_refuses_path_traversal() {
    let c = Crafted::new("dotdot");
    let mut items = ok_items();
    items.push(Item::File(b("../escape"), b("pwned\n")));
    c.write(&items);
    c.assert_contained(&["../escape"]);
    assert!(!c.fx.root().join("r/escape").exists());
}

#[test]
fn restore_refuses_path_traversal_inside_a_path() {
    let c = Crafted::new("inner-dotdot");
    let mut items = ok_items();
    items.push(Item::Dir(b("a")));
    items.push(Item::File(b("a/../../x"), b("pwned\n")));
    c.write(&items);
    c.assert_contained(&["a/../../x"]);
    assert!(!c.fx.root().join("r/x").exists());
}

#[test]
fn restore_refuses_absolute_paths() {
    let c = Crafted::new("absolute");
    let abs = c.fx.root().join("abs-xyz");
    let mut items = ok_items();
    items.push(Item::File(
        abs.as_os_str().as_bytes().to_vec(),
        b("pwned\n"),
    ));
    c.write(&items);
    c.assert_contained(&["abs-xyz"]);
    assert!(!abs.exists());
}

#[test]
fn restore_refuses_writing_through_absolute_symlink() {
    let c = Crafted::new("through-abs-link");
    let outside = c.fx.root().join("outside-dir");
    fs::create_dir(&outside).unwrap();
    let mut items = ok_items();
    items.push(Item::Symlink(
        b("link"),
        outside.as_os_str().as_bytes().to_vec(),
    ));
    items.push(Item::File(b("link/pwned"), b("pwned\n")));
    c.write(&items);
    c.assert_contained(&["link/pwned"]);
    assert!(!outside.join("pwned").exists());
}

#[test]
fn restore_refuses_writing_through_symlink_to_parent() {
    let c = Crafted::new("through-up-link");
    let mut items = ok_items();
    items.push(Item::Symlink(b("up"), b("..")));
    items.push(Item::File(b("up/escaped"), b("pwned\n")));
    c.write(&items);
    c.assert_contained(&["up/escaped"]);
    assert!(!c.fx.root().join("r/escaped").exists());
}

#[test]
fn restore_refuses_writing_through_nested_symlink_chain() {
    let c = Crafted::new("through-chain");
    let mut items = ok_items();
    items.push(Item::Dir(b("d")));
    items.push(Item::Symlink(b("d/up"), b("../..")));
    items.push(Item::File(b("d/up/chained"), b("pwned\n")));
    c.write(&items);
    c.assert_contained(&["d/up/chained"]);
    assert!(!c.fx.root().join("r/chained").exists());
}

#[test]
fn restore_refuses_hard_links_to_outside_files() {
    let c = Crafted::new("hardlink-out");
    let victim = c.fx.root().join("r/victim.txt");
    fs::write(&victim, b"victim\n").unwrap();
    let mut items = ok_items();
    items.push(Item::Hardlink(b("rel-hl"), b("../victim.txt")));
    items.push(Item::Hardlink(
        b("abs-hl"),
        victim.as_os_str().as_bytes().to_vec(),
    ));
    c.write(&items);
    c.assert_contained(&["rel-hl", "abs-hl"]);
    let md = fs::metadata(&victim).unwrap();
    assert_eq!(
        md.nlink(),
        1,
        "no hard link to a file outside the target was made"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"victim\n");
}

/// The archive's names are not trusted either: an entry whose tar name differs from the index (here
/// `../evil.txt` where the index says `evil.txt`) is refused or lands under the index's name.
#[test]
fn restore_does_not_trust_tar_names_that_differ_from_the_index() {
    let c = Crafted::new("tar-name");
    let mut items = ok_items();
    items.push(Item::File(b("evil.txt"), b("pwned\n")));
    let renamed = [(b("evil.txt"), b("../evil.txt"))].into_iter().collect();
    c.write_renamed(&items, &renamed);
    let out = c.assert_contained(&["evil.txt"]);
    assert!(!c.fx.root().join("r/evil.txt").exists(), "{out}");
}

/// With --overwrite into a target that has a symlink where the backup has a directory, the restore
/// replaces the symlink instead of writing through it.
#[test]
fn overwrite_does_not_write_through_existing_symlinks() {
    let fx = Fixture::new("overwrite-symlink");
    fs::create_dir(fx.src.join("sub")).unwrap();
    fs::write(fx.src.join("sub/file.txt"), b"inside\n").unwrap();
    fs::write(fx.src.join("top.txt"), b"top\n").unwrap();
    fx.backup(&[] as &[&str]);
    let outside = fx.path("outside-dir");
    fs::create_dir(&outside).unwrap();
    let victim = fx.path("victim.txt");
    fs::write(&victim, b"victim\n").unwrap();
    let target = fx.path("target");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("sub")).unwrap();
    std::os::unix::fs::symlink(&victim, target.join("top.txt")).unwrap();
    let out = fx.try_restore(&target, &["--overwrite"]);
    out.assert_no_panic();
    assert!(
        absent_or_empty(&outside),
        "wrote through a symlink in the target:\n{out}"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"victim\n",
        "wrote through a symlink in the target:\n{out}"
    );
    out.assert_code(0);
    assert!(fs::symlink_metadata(target.join("sub")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("sub/file.txt")).unwrap(), b"inside\n");
    assert!(fs::symlink_metadata(target.join("top.txt"))
        .unwrap()
        .is_file());
    assert_eq!(fs::read(target.join("top.txt")).unwrap(), b"top\n");
}

// ---------------------------------------------------------------------------------------------------
// Interrupted backups
// ---------------------------------------------------------------------------------------------------

/// Bytes in files below `root`, not counting `except`.
fn bytes_below(root: &Path, except: &Path) -> u64 {
    let mut n = 0;
    if root.starts_with(except) {
        return 0;
    }
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let md = e.metadata().unwrap();
            if md.is_dir() {
                n += bytes_below(&e.path(), except);
            } else {
                n += md.len();
            }
        }
    }
    n
}

fn interrupted_backup(signal: i32) {
    let fx = Fixture::new(&format!("interrupt-{signal}"));
    fs::write(fx.src.join("a.txt"), b"before the interrupted backup\n").unwrap();
    fs::create_dir(fx.src.join("dir")).unwrap();
    fs::write(fx.src.join("dir/b.txt"), b"b\n").unwrap();
    let snap0 = snapshot(&fx.src);
    let s0 = fx.backup(&[] as &[&str]);
    let dir0 = backup_dir(&s0);

    write_random_file(&fx.src.join("big.bin"), 99, 200 << 20);
    let logs = fx.path("interrupted.log");
    let mut cmd = worker();
    cmd.args(fx.backup_args(
        &fx.src,
        &["--compression", "xz", "--max-segment-size", "1048576"],
    ))
    .stdout(Stdio::from(
        fs::File::create(fx.path("interrupted.out")).unwrap(),
    ))
    .stderr(Stdio::from(fs::File::create(&logs).unwrap()));
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    // Let it write a few segments (or run for a while if it stages them elsewhere).
    while bytes_below(&fx.container, &dir0) < 3 << 20 && start.elapsed() < Duration::from_secs(20) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before it could be interrupted (test inconclusive); stderr:\n{}",
        fs::read_to_string(&logs).unwrap_or_default()
    );
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the backup did not stop within 60 s of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read_to_string(&logs).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    if signal == libc::SIGKILL {
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    } else {
        assert_eq!(
            status.code(),
            Some(130),
            "an interrupted backup exits 130; stderr:\n{stderr}"
        );
    }

    // No manifest: no backup. The earlier backup is intact.
    assert_eq!(
        find_manifests(&fx.container),
        vec![dir0.join("manifest.json")],
        "only the first backup has a manifest"
    );
    let list = fx.list();
    assert_eq!(
        list.len(),
        1,
        "list shows only the complete backup: {list:#?}"
    );
    assert_eq!(list[0]["backup_id"], s0["backup_id"]);
    let target = fx.path("restore-after-interrupt");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snap0, &target, Compare::full());

    // The next backup works (the lock is not left held) and is what restore gives.
    fs::write(fx.src.join("big.bin"), b"small now\n").unwrap();
    let snap1 = snapshot(&fx.src);
    let s1 = fx.backup(&[] as &[&str]);
    let list = fx.list();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_eq!(list[1]["backup_id"], s1["backup_id"]);
    let target = fx.path("restore-next");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snap1, &target, Compare::full());
}

#[test]
fn interrupted_backup_sigkill_leaves_no_backup() {
    interrupted_backup(libc::SIGKILL);
}

#[test]
fn interrupted_backup_sigint_exits_130_and_leaves_no_backup() {
    interrupted_backup(libc::SIGINT);
}

// ---------------------------------------------------------------------------------------------------
// Unreadable files, dry run, full disk, lock, usage
// ---------------------------------------------------------------------------------------------------

#[test]
fn unreadable_file_gives_exit_3_and_a_listed_backup() {
    let fx = Fixture::new("unreadable");
    fs::write(fx.src.join("readable.txt"), b"readable\n").unwrap();
    fs::create_dir(fx.src.join("dir")).unwrap();
    fs::write(fx.src.join("dir/also-readable.txt"), b"also\n").unwrap();
    fs::write(fx.src.join("secret.txt"), b"cannot read me\n").unwrap();
    chmod(&fx.src.join("secret.txt"), 0o000);
    let mut cmd = worker();
    cmd.args(fx.backup_args(&fx.src, &[] as &[&str]));
    let out = if is_root() {
        // Root reads everything: run the worker as nobody instead, if setpriv can.
        if !can_run_as_nobody() {
            eprintln!("skipping unreadable_file_gives_exit_3_and_a_listed_backup: root, and cannot run the worker as nobody");
            return;
        }
        chown_tree(fx.root(), 65534, 65534);
        run_command(&mut as_nobody(&cmd), DEFAULT_TIMEOUT)
    } else {
        run_command(&mut cmd, DEFAULT_TIMEOUT)
    };
    out.assert_no_panic().assert_code(3);
    assert!(
        out.stderr.contains("secret.txt"),
        "the unreadable file is named:\n{out}"
    );
    let s = out.json();
    assert_eq!(s["unreadable"], 1, "{s}");
    let m = read_manifest(&backup_dir(&s));
    assert_eq!(m["totals"]["unreadable"], 1, "{m}");
    let list = fx.list();
    assert_eq!(
        list.len(),
        1,
        "the backup with an unreadable file is listed"
    );
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(
        fs::read(target.join("readable.txt")).unwrap(),
        b"readable\n"
    );
    assert_eq!(
        fs::read(target.join("dir/also-readable.txt")).unwrap(),
        b"also\n"
    );
    if let Ok(content) = fs::read(target.join("secret.txt")) {
        assert!(
            content.is_empty() || content == b"cannot read me\n",
            "secret.txt restored with made-up content"
        );
    }
}

#[test]
fn dry_run_backup_writes_nothing() {
    let fx = Fixture::new("dryrun");
    make_tree(&fx.src, &TreeOpts::default());
    fx.backup(&[] as &[&str]);
    fs::write(fx.src.join("added.txt"), b"added\n").unwrap();
    let before = fingerprint(&fx.container);
    for extra in [
        vec![],
        vec!["--no-incremental"],
        fx.enc().iter().map(|s| s.to_str().unwrap()).collect(),
    ] {
        let mut args = vec!["--dry-run"];
        args.extend(extra);
        let out = fx.try_backup(&args);
        out.assert_no_panic().assert_code(0);
        assert_eq!(
            fingerprint(&fx.container),
            before,
            "--dry-run wrote to the container:\n{out}"
        );
    }
    assert_eq!(fx.list().len(), 1);
    // Not even a new container is created.
    let fresh = fx.path("fresh-container");
    let mut args = fx.backup_args(&fx.src, &["--dry-run"]);
    let i = args.iter().position(|a| a == "--container").unwrap();
    args[i + 1] = fresh.clone().into_os_string();
    let out = run(args);
    out.assert_no_panic().assert_code(0);
    assert!(!fresh.exists(), "--dry-run created the container:\n{out}");
}

#[test]
fn dry_run_restore_writes_nothing() {
    let fx = Fixture::new("dryrun-restore");
    make_tree(&fx.src, &TreeOpts::default());
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    let out = fx.try_restore(&target, &["--dry-run"]);
    out.assert_no_panic().assert_code(0);
    assert!(
        !target.exists(),
        "--dry-run restore created the target:\n{out}"
    );
    fs::create_dir(&target).unwrap();
    fs::write(target.join("existing.txt"), b"existing\n").unwrap();
    let before = fingerprint(&target);
    let out = fx.try_restore(&target, &["--dry-run", "--overwrite"]);
    out.assert_no_panic().assert_code(0);
    assert_eq!(
        fingerprint(&target),
        before,
        "--dry-run restore wrote:\n{out}"
    );
}

#[test]
fn full_disk_fails_cleanly() {
    if !is_root() {
        eprintln!("skipping full_disk_fails_cleanly: mounting a tmpfs needs root");
        return;
    }
    let mut fx = Fixture::new("fulldisk");
    let mnt = fx.path("small-container");
    let Some(_mount) = TmpfsMount::new(&mnt, "8m") else {
        eprintln!("skipping full_disk_fails_cleanly: cannot mount a tmpfs");
        return;
    };
    fx.container = mnt.clone();
    write_random_file(&fx.src.join("random.bin"), 5, 50 << 20);
    let out = fx.try_backup(&["--max-segment-size", "1048576"]);
    out.assert_no_panic();
    assert_eq!(out.code(), 1, "a full disk is a failure (exit 1):\n{out}");
    assert!(
        out.stderr.to_lowercase().contains("no space"),
        "the error says the storage is full:\n{out}"
    );
    assert!(
        find_manifests(&mnt).is_empty(),
        "no manifest for a failed backup"
    );
    let debris = bytes_below(&mnt, Path::new("/nonexistent"));
    eprintln!("note: {debris} bytes of debris left in the full container");
}

#[test]
fn concurrent_backup_is_refused_with_exit_11() {
    let fx = Fixture::new("locked");
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let lock_path = fx.container.join(format!("{HOST}_{}.lock", fx.name));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open file descriptor.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = fx.try_backup(&[] as &[&str]);
    out.assert_no_panic().assert_code(11);
    assert!(find_manifests(&fx.container).is_empty());
    drop(lock);
    // A process that another test thread is forking at this moment may hold a copy of our lock fd
    // until its exec: wait for the lock to be really free.
    let again = fs::File::open(&lock_path).unwrap();
    // SAFETY: flock on an open file descriptor.
    assert_eq!(unsafe { libc::flock(again.as_raw_fd(), libc::LOCK_EX) }, 0);
    drop(again);
    fx.backup(&[] as &[&str]);
    assert_eq!(fx.list().len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fixture::new("usage");
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let cases: Vec<Vec<OsString>> = vec![
        fx.backup_args(&fx.src, &["--max-level", "2", "--always-level", "1"]),
        fx.backup_args(&fx.src, &["--max-level", "2", "--no-incremental"]),
        fx.backup_args(&fx.src, &["--compression", "lz4"]),
        fx.backup_args(&fx.src, &["--dereference-symlink", "sometimes"]),
        fx.restore_args(&fx.path("t"), &["--restore-from-date", "yesterday"]),
        vec![
            "backup".into(),
            "--container".into(),
            fx.container.clone().into(),
            "--backup-name".into(),
            "x".into(),
        ],
        vec!["no-such-command".into()],
    ];
    for args in cases {
        let out = run(&args);
        out.assert_no_panic().assert_code(2);
    }
    assert!(find_manifests(&fx.container).is_empty());
}

#[test]
fn missing_source_fails_without_a_backup() {
    let fx = Fixture::new("nosource");
    let out = run(fx.backup_args(&fx.path("does-not-exist"), &[] as &[&str]));
    out.assert_no_panic();
    assert_ne!(out.code(), 0, "{out}");
    assert_ne!(out.code(), 3, "{out}");
    assert!(
        out.stderr.contains("does-not-exist"),
        "the missing path is named:\n{out}"
    );
    assert!(find_manifests(&fx.container).is_empty());
}

/// The lock is per backup name: backups of two names into one container run side by side.
#[test]
fn backups_of_different_names_run_concurrently() {
    let fx = Fixture::new("first");
    write_random_file(&fx.src.join("data.bin"), 1, 8 << 20);
    let mut second = Fixture::new("second");
    second.container = fx.container.clone();
    write_random_file(&second.src.join("data.bin"), 2, 8 << 20);
    let t = {
        let args = second.backup_args(&second.src, &["--compression", "xz"]);
        std::thread::spawn(move || run(args))
    };
    let a = fx.try_backup(&["--compression", "xz"]);
    let b = t.join().unwrap();
    a.assert_code(0);
    b.assert_code(0);
    assert_eq!(fx.list().len(), 1);
    assert_eq!(second.list().len(), 1);
}
