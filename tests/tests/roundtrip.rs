//! Backup then restore gives back the same tree: content, types, modes, owners, nanosecond mtimes,
//! symlinks, hard links, xattrs, odd names, special files, sparse files; for every codec, with and
//! without encryption.

use freezer_e2e::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

fn roundtrip(codec: &str, encrypted: bool) {
    let fx = Fixture::new(&format!("rt-{codec}"));
    let info = make_tree(&fx.src, &TreeOpts::full());
    let before = snapshot(&fx.src);

    let mut args: Vec<std::ffi::OsString> = vec!["--compression".into(), codec.into()];
    if encrypted {
        args.extend(fx.enc());
    }
    let backup = fx.try_backup(&args);
    backup.assert_code(0);
    assert!(
        !backup.stdout.contains(PASSPHRASE) && !backup.stderr.contains(PASSPHRASE),
        "passphrase leaked:\n{backup}"
    );
    let summary = backup.json();
    assert_eq!(summary["level"], 0, "first backup is level 0: {summary}");
    assert_eq!(summary["kind"], "full", "{summary}");
    assert_eq!(summary["unreadable"], 0, "{summary}");
    let n_files = before.values().filter(|e| e.kind == Kind::File).count() as u64;
    // Regular files: the three extra names of the two hard-link groups may or may not count.
    let files = summary["files"].as_u64().unwrap_or(0);
    assert!(
        (n_files - 3..=n_files).contains(&files),
        "files = {files}, the tree has {n_files} regular file names: {summary}"
    );
    assert_eq!(
        summary["entries"].as_u64(),
        Some(before.len() as u64),
        "entries = every entry incl. the root: {summary}"
    );

    let dir = backup_dir(&summary);
    let m = read_manifest(&dir);
    assert_eq!(
        m["compression"]["codec"], codec,
        "manifest compression: {m}"
    );
    if encrypted {
        assert_eq!(m["encryption"]["cipher"], "aes-256-cfb", "{m}");
        assert_eq!(
            m["encryption"]["iterations"], TEST_KDF_ITERATIONS,
            "FREEZER_KDF_ITERATIONS is honoured: {m}"
        );
        let seg0 = fs::read(&segment_paths(&dir)[0]).unwrap();
        assert!(
            seg0.starts_with(b"Salted__"),
            "encrypted segment 0 starts with Salted__"
        );
        // No file content in the clear anywhere in the backup.
        let all = concat_segments(&dir);
        assert!(
            !contains(&all, b"the quick brown fox"),
            "plain text found in encrypted segments"
        );
        assert!(
            !contains(&fs::read(dir.join("index")).unwrap(), b"with space.txt"),
            "file names found in the encrypted index"
        );
    } else {
        assert!(m["encryption"].is_null(), "{m}");
    }
    let target = fx.path("restored");
    let mut rargs: Vec<std::ffi::OsString> = Vec::new();
    if encrypted {
        rargs.extend(fx.enc());
    }
    let out = fx.restore(&target, &rargs);
    assert!(
        !out.stdout.contains(PASSPHRASE) && !out.stderr.contains(PASSPHRASE),
        "passphrase leaked:\n{out}"
    );
    assert_tree(&before, &target, Compare::full());
    if info.xattrs {
        assert_eq!(
            xattr::get(target.join("f10k.bin"), "user.binary")
                .unwrap()
                .as_deref(),
            Some(&[0u8, 1, 2, 0xff, 0xfe, 0, 10][..])
        );
    }
    // Hard links are hard links again.
    let a = fs::metadata(target.join("hl-a.txt")).unwrap();
    let b = fs::metadata(target.join("sub/hl-b.txt")).unwrap();
    assert_eq!(
        a.ino(),
        b.ino(),
        "hl-a.txt and sub/hl-b.txt share an inode after restore"
    );
    assert_eq!(a.nlink(), 3);
    // The source was not touched by the backup.
    assert_tree(&before, &fx.src, Compare::full());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn roundtrip_zstd() {
    roundtrip("zstd", false);
}

#[test]
fn roundtrip_zstd_encrypted() {
    roundtrip("zstd", true);
}

#[test]
fn roundtrip_gzip() {
    roundtrip("gzip", false);
}

#[test]
fn roundtrip_gzip_encrypted() {
    roundtrip("gzip", true);
}

#[test]
fn roundtrip_bzip2() {
    roundtrip("bzip2", false);
}

#[test]
fn roundtrip_bzip2_encrypted() {
    roundtrip("bzip2", true);
}

#[test]
fn roundtrip_xz() {
    roundtrip("xz", false);
}

#[test]
fn roundtrip_xz_encrypted() {
    roundtrip("xz", true);
}

#[test]
fn roundtrip_none() {
    roundtrip("none", false);
}

#[test]
fn roundtrip_none_encrypted() {
    roundtrip("none", true);
}

#[test]
fn roundtrip_sparse_3gib_file() {
    let fx = Fixture::new("sparse");
    make_tree(
        &fx.src,
        &TreeOpts {
            sparse: true,
            ..TreeOpts::default()
        },
    );
    let before = snapshot(&fx.src);
    let summary = fx.backup(&fx.enc());
    let stored = summary["bytes_stored"].as_u64().unwrap();
    assert!(
        stored < 64 << 20,
        "3 GiB of holes should compress to little, stored {stored} bytes: {summary}"
    );
    let target = fx.path("restored");
    fx.restore(&target, &fx.enc());
    assert_tree(&before, &target, Compare::full());
    let md = fs::metadata(target.join("sparse.img")).unwrap();
    assert_eq!(md.len(), SPARSE_SIZE);
    // Spot checks of the data blocks, independent of the snapshot's hashing.
    let restored = fs::File::open(target.join("sparse.img")).unwrap();
    let mut buf = vec![0u8; 10_000];
    use std::os::unix::fs::FileExt;
    restored
        .read_exact_at(&mut buf, (1 << 30) + 12_345)
        .unwrap();
    assert_eq!(buf, random_bytes(2, 10_000));
    restored
        .read_exact_at(&mut buf[..4096], SPARSE_SIZE - 4096)
        .unwrap();
    assert_eq!(&buf[..4096], &random_bytes(3, 4096)[..]);
    restored.read_exact_at(&mut buf[..4096], 2 << 30).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0), "a hole reads as zeros");
    let allocated = md.blocks() * 512;
    eprintln!(
        "note: restored sparse.img allocates {} KiB on disk",
        allocated >> 10
    );
    assert!(
        allocated < 64 << 20,
        "the restored 3 GiB sparse file is not sparse: {allocated} bytes allocated"
    );
}

#[test]
fn single_file_backup_restores_file_by_name_into_target() {
    let fx = Fixture::new("single");
    let file = fx.src.join("report 2026.txt");
    fs::write(&file, random_bytes(5, 123_457)).unwrap();
    chmod(&file, 0o640);
    xattr::set(&file, "user.origin", b"single").ok();
    set_mtime(&file, 1_700_000_000, 987_654_321);
    let summary = run_ok(fx.backup_args(&file, &fx.enc())).json();
    let m = read_manifest(&backup_dir(&summary));
    assert_eq!(m["source"]["kind"], "file", "{m}");
    assert_eq!(summary["files"], 1, "{summary}");

    let target = fx.path("restored");
    fx.restore(&target, &fx.enc());
    let names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("report 2026.txt")],
        "target holds exactly the file"
    );
    let want = snapshot(&fx.src);
    let got = snapshot(&target);
    let key = b"report 2026.txt".to_vec();
    let d = diff_snapshots(
        &[(key.clone(), want[&key].clone())].into_iter().collect(),
        &[(key.clone(), got[&key].clone())].into_iter().collect(),
        Compare::full(),
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn compression_level_is_recorded_in_manifest() {
    let fx = Fixture::new("level");
    fs::write(fx.src.join("a.txt"), "abc".repeat(10_000)).unwrap();
    let summary = fx.backup(&["--compression", "gzip", "--compression-level", "9"]);
    let m = read_manifest(&backup_dir(&summary));
    assert_eq!(
        m["compression"],
        serde_json::json!({"codec": "gzip", "level": 9}),
        "{m}"
    );
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(
        fs::read(target.join("a.txt")).unwrap(),
        "abc".repeat(10_000).as_bytes()
    );
}

#[test]
fn exclude_glob_skips_matching_entries() {
    let fx = Fixture::new("exclude");
    fs::create_dir_all(fx.src.join("sub/cache")).unwrap();
    fs::write(fx.src.join("keep.txt"), b"keep").unwrap();
    fs::write(fx.src.join("top.log"), b"log").unwrap();
    fs::write(fx.src.join("sub/nested.log"), b"log").unwrap();
    fs::write(fx.src.join("sub/keep.txt"), b"keep").unwrap();
    fs::write(fx.src.join("sub/cache/blob"), b"cache").unwrap();
    fx.backup(&["--exclude", "*.log", "--exclude", "sub/cache"]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert!(target.join("keep.txt").is_file());
    assert!(target.join("sub/keep.txt").is_file());
    assert!(
        !target.join("top.log").exists(),
        "top.log excluded by *.log"
    );
    assert!(
        !target.join("sub/nested.log").exists(),
        "sub/nested.log excluded by *.log"
    );
    assert!(!target.join("sub/cache").exists(), "sub/cache excluded");
}

#[test]
fn restore_into_existing_empty_directory() {
    let fx = Fixture::new("existing-empty");
    make_tree(&fx.src, &TreeOpts::default());
    let before = snapshot(&fx.src);
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    fs::create_dir(&target).unwrap();
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&before, &target, Compare::full());
}

#[test]
fn dereference_symlink_soft_stores_what_links_point_to() {
    let fx = Fixture::new("deref-soft");
    fs::create_dir(fx.src.join("sub")).unwrap();
    fs::write(fx.src.join("sub/x.txt"), b"x\n").unwrap();
    fs::write(fx.src.join("file.txt"), b"the target\n").unwrap();
    std::os::unix::fs::symlink("file.txt", fx.src.join("link")).unwrap();
    std::os::unix::fs::symlink("sub", fx.src.join("dirlink")).unwrap();
    fx.backup(&["--dereference-symlink", "soft"]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    let md = fs::symlink_metadata(target.join("link")).unwrap();
    assert!(
        md.is_file(),
        "with soft dereference a symlink to a file is stored as the file"
    );
    assert_eq!(fs::read(target.join("link")).unwrap(), b"the target\n");
    assert!(
        fs::symlink_metadata(target.join("dirlink"))
            .unwrap()
            .is_dir(),
        "a symlink to a directory is stored as the directory"
    );
    assert_eq!(fs::read(target.join("dirlink/x.txt")).unwrap(), b"x\n");
    assert_eq!(fs::read(target.join("file.txt")).unwrap(), b"the target\n");
}

#[test]
fn dereference_symlink_soft_survives_a_symlink_loop() {
    let fx = Fixture::new("deref-loop");
    fs::create_dir(fx.src.join("sub")).unwrap();
    fs::write(fx.src.join("sub/x.txt"), b"x\n").unwrap();
    std::os::unix::fs::symlink("..", fx.src.join("sub/loop")).unwrap();
    let out = run_command(
        worker().args(fx.backup_args(&fx.src, &["--dereference-symlink", "soft"])),
        std::time::Duration::from_secs(120),
    );
    out.assert_no_panic();
    assert!(
        matches!(out.code(), 0 | 3),
        "a symlink loop is skipped or reported, the backup is written:\n{out}"
    );
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("sub/x.txt")).unwrap(), b"x\n");
}

#[test]
fn dereference_symlink_hard_splits_hard_links() {
    let fx = Fixture::new("deref-hard");
    fs::write(fx.src.join("a.txt"), b"shared\n").unwrap();
    fs::hard_link(fx.src.join("a.txt"), fx.src.join("b.txt")).unwrap();
    std::os::unix::fs::symlink("a.txt", fx.src.join("link")).unwrap();
    fx.backup(&["--dereference-symlink", "hard"]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    let a = fs::metadata(target.join("a.txt")).unwrap();
    let b = fs::metadata(target.join("b.txt")).unwrap();
    assert_ne!(a.ino(), b.ino(), "hard links stored as separate files");
    assert_eq!(fs::read(target.join("b.txt")).unwrap(), b"shared\n");
    assert_eq!(
        fs::read_link(target.join("link")).unwrap(),
        std::path::Path::new("a.txt"),
        "symlinks are kept with hard"
    );
}

/// A file over 8 GiB needs a PAX size record; sparse so that it costs little disk.
#[test]
fn roundtrip_file_over_8gib() {
    let fx = Fixture::new("huge");
    let size: u64 = (8 << 30) + 4096 * 3 + 17;
    let f = fs::File::create(fx.src.join("huge.img")).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"past 8 GiB", (8 << 30) + 1).unwrap();
    f.write_all_at(b"end", size - 3).unwrap();
    drop(f);
    set_mtime(&fx.src.join("huge.img"), 1_650_000_000, 5);
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    let r = fs::File::open(target.join("huge.img")).unwrap();
    let md = r.metadata().unwrap();
    assert_eq!(md.len(), size);
    assert_eq!(md.mtime_nsec(), 5);
    let mut buf = [0u8; 10];
    r.read_exact_at(&mut buf[..5], 0).unwrap();
    assert_eq!(&buf[..5], b"start");
    r.read_exact_at(&mut buf, (8 << 30) + 1).unwrap();
    assert_eq!(&buf, b"past 8 GiB");
    r.read_exact_at(&mut buf[..3], size - 3).unwrap();
    assert_eq!(&buf[..3], b"end");
    r.read_exact_at(&mut buf, 4 << 30).unwrap();
    assert_eq!(buf, [0u8; 10]);
    r.read_exact_at(&mut buf, (8 << 30) - 20).unwrap();
    assert_eq!(buf, [0u8; 10]);
}

/// mtimes before 1970, at 0, and past what a ustar header can hold (2^33 s), with nanoseconds.
#[test]
fn roundtrip_extreme_mtimes() {
    let fx = Fixture::new("times");
    let cases: [(&str, i64, u32); 5] = [
        ("before-1970", -1_000_000_000, 123_456_789),
        ("just-before-1970", -1, 999_999_999),
        ("epoch", 0, 0),
        ("year-2300", 10_413_792_000, 1),
        ("ustar-limit", (1 << 33) - 1, 500),
    ];
    for (name, secs, ns) in cases {
        fs::write(fx.src.join(name), name.as_bytes()).unwrap();
        set_mtime(&fx.src.join(name), secs, ns);
    }
    fs::create_dir(fx.src.join("old-dir")).unwrap();
    set_mtime(&fx.src.join("old-dir"), -86_400 * 365, 42);
    let before = snapshot(&fx.src);
    for enc in [false, true] {
        let args = if enc { fx.enc() } else { Vec::new() };
        fx.backup(&args);
        let target = fx.path(&format!("restored-{enc}"));
        fx.restore(&target, &args);
        assert_tree(&before, &target, Compare::full());
    }
}

#[test]
fn roundtrip_awkward_names() {
    let fx = Fixture::new("names");
    let names: Vec<Vec<u8>> = vec![
        b"-rf".to_vec(),
        b"--help".to_vec(),
        b"back\\slash".to_vec(),
        b"tab\there".to_vec(),
        b"carriage\rreturn".to_vec(),
        b"quote'\"s".to_vec(),
        b"$(touch pwned)".to_vec(),
        b"*?[glob]".to_vec(),
        b"colon:and;semicolon".to_vec(),
        vec![b'n'; 255],
        "\u{feff}bom \u{200b}zero-width \u{1f600}"
            .as_bytes()
            .to_vec(),
        b"latin1-\xe9t\xe9".to_vec(),
        b"trailing space ".to_vec(),
        b"..dots".to_vec(),
        b"...".to_vec(),
    ];
    for (i, n) in names.iter().enumerate() {
        fs::write(join_bytes(&fx.src, n), format!("file {i}")).unwrap();
    }
    fs::create_dir(fx.src.join("dir with\nnewline")).unwrap();
    fs::write(fx.src.join("dir with\nnewline/-"), b"dash").unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"tab\there"),
        fx.src.join("link-to-tab"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9"),
        join_bytes(&fx.src, b"link-\xff"),
    )
    .unwrap();
    let before = snapshot(&fx.src);
    fx.backup(&fx.enc());
    let target = fx.path("restored");
    fx.restore(&target, &fx.enc());
    assert_tree(&before, &target, Compare::full());
    assert!(!fx.root().join("pwned").exists() && !fx.src.join("pwned").exists());
}

#[test]
fn empty_source_directory_roundtrip() {
    let fx = Fixture::new("empty-src");
    chmod(&fx.src, 0o750);
    set_mtime(&fx.src, 1_600_000_000, 7);
    let before = snapshot(&fx.src);
    let s = fx.backup(&[] as &[&str]);
    assert_eq!(s["entries"], 1, "{s}");
    assert_eq!(s["files"], 0, "{s}");
    let target = fx.path("deep/not/yet/existing/target");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&before, &target, Compare::full());
}

#[test]
fn relative_path_to_backup_works() {
    let fx = Fixture::new("relative");
    fs::write(fx.src.join("a.txt"), b"relative\n").unwrap();
    let mut args = fx.backup_args(std::path::Path::new("src"), &[] as &[&str]);
    args.retain(|a| a != "--json");
    let mut cmd = worker();
    cmd.current_dir(fx.root()).args(&args);
    run_command(&mut cmd, DEFAULT_TIMEOUT).assert_code(0);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"relative\n");
    let list = fx.list();
    let m = read_manifest(std::path::Path::new(list[0]["path"].as_str().unwrap()));
    assert_eq!(
        m["source"]["path"].as_str().map(std::path::Path::new),
        Some(fx.src.as_path()),
        "source.path is absolute: {m}"
    );
}

#[test]
fn restore_twice_with_overwrite_is_idempotent() {
    let fx = Fixture::new("twice");
    make_tree(&fx.src, &TreeOpts::full());
    let before = snapshot(&fx.src);
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    fx.restore(&target, &["--overwrite"]);
    assert_tree(&before, &target, Compare::full());
}

#[test]
fn restore_onto_a_regular_file_fails_cleanly() {
    let fx = Fixture::new("onto-file");
    fs::write(fx.src.join("a.txt"), b"a").unwrap();
    fx.backup(&[] as &[&str]);
    let target = fx.path("a-file");
    fs::write(&target, b"i am a file").unwrap();
    let out = fx.try_restore(&target, &["--overwrite"]);
    out.assert_no_panic();
    assert_ne!(out.code(), 0, "{out}");
    assert_eq!(fs::read(&target).unwrap(), b"i am a file");
}

/// Hard links whose first name is excluded: the remaining names still get the content.
#[test]
fn exclude_keeps_content_of_hard_links_to_excluded_names() {
    let fx = Fixture::new("exclude-hl");
    fs::write(fx.src.join("a.log"), b"shared by a hard link\n").unwrap();
    fs::hard_link(fx.src.join("a.log"), fx.src.join("b.txt")).unwrap();
    fs::hard_link(fx.src.join("a.log"), fx.src.join("c.txt")).unwrap();
    fx.backup(&["--exclude", "*.log"]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert!(!target.join("a.log").exists());
    assert_eq!(
        fs::read(target.join("b.txt")).unwrap(),
        b"shared by a hard link\n"
    );
    assert_eq!(
        fs::read(target.join("c.txt")).unwrap(),
        b"shared by a hard link\n"
    );
    assert_eq!(
        fs::metadata(target.join("b.txt")).unwrap().ino(),
        fs::metadata(target.join("c.txt")).unwrap().ino(),
        "the remaining names are still hard links"
    );
}

/// A unix socket cannot be archived: it is skipped (with a warning), not a failure or a crash.
#[test]
fn unix_socket_is_skipped() {
    let fx = Fixture::new("socket");
    fs::write(fx.src.join("a.txt"), b"a").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(fx.src.join("sock")).unwrap();
    let out = fx.try_backup(&[] as &[&str]);
    out.assert_no_panic();
    assert!(matches!(out.code(), 0 | 3), "{out}");
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"a");
}

#[test]
fn single_file_incremental_restores_each_version() {
    let fx = Fixture::new("single-inc");
    let file = fx.src.join("db.dump");
    let mut ids = Vec::new();
    for v in 0..3u64 {
        fs::write(&file, random_bytes(v, 50_000 + v as usize)).unwrap();
        let s = run_ok(fx.backup_args(&file, &[] as &[&str])).json();
        assert_eq!(s["level"], v, "{s}");
        if v < 2 {
            wait_for_next_backup(s["backup_id"].as_str().unwrap());
        }
        ids.push(s["backup_id"].as_str().unwrap().to_string());
    }
    for (v, id) in ids.iter().enumerate() {
        let target = fx.path(&format!("restored-{v}"));
        fx.restore(
            &target,
            &["--restore-from-date", restore_date_for(id).as_str()],
        );
        assert_eq!(
            fs::read(target.join("db.dump")).unwrap(),
            random_bytes(v as u64, 50_000 + v)
        );
    }
    // A date in the future restores the newest.
    let target = fx.path("restored-future");
    fx.restore(&target, &["--restore-from-date", "2999-01-01T00:00:00"]);
    assert_eq!(
        fs::read(target.join("db.dump")).unwrap(),
        random_bytes(2, 50_002)
    );
}

/// A backup made by root of files with foreign owners restores as an ordinary user: owners where
/// permitted (not here), everything else as backed up.
#[test]
fn restore_as_non_root_of_foreign_owned_files() {
    if !can_run_as_nobody() {
        eprintln!("skipping restore_as_non_root_of_foreign_owned_files: needs root and setpriv");
        return;
    }
    let fx = Fixture::new("as-nobody");
    let info = make_tree(&fx.src, &TreeOpts::full());
    assert!(info.owners);
    let before = snapshot(&fx.src);
    fx.backup(&fx.enc());
    chown_tree(&fx.container, 65534, 65534);
    chown_tree(&fx.pass, 65534, 65534);
    chmod(fx.root(), 0o755);
    let target = fx.path("restored");
    fs::create_dir(&target).unwrap();
    chown_tree(&target, 65534, 65534);
    let mut cmd = worker();
    cmd.args(fx.restore_args(&target, &fx.enc()));
    run_command(&mut as_nobody(&cmd), DEFAULT_TIMEOUT).assert_code(0);
    let mut expected = before.clone();
    // Devices cannot be made by an ordinary user.
    expected.remove(b"chardev".as_slice());
    let c = Compare {
        owners: false,
        allow_extra: false,
        ..Compare::full()
    };
    assert_tree(&expected, &target, c);
}
