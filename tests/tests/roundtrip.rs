//! Backup then restore gives back the same tree: content, types, modes, owners, nanosecond mtimes,
//! symlinks, hard links, xattrs, odd names, special files, sparse files; for every codec, with and
//! without encryption.

use freezer_e2e::*;
use std::fs;
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
