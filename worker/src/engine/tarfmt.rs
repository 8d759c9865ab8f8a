//! Encoding of tar headers: ustar with PAX `x` records for what ustar cannot hold (long or non-ASCII
//! names, big sizes and ids, nanosecond mtimes, xattrs), readable by GNU tar, bsdtar and `tar` crate.

use crate::index::{Entry, EntryType};

/// Size of a tar block.
pub const BLOCK: usize = 512;

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts the whole record including its own digits.
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if len.to_string().len() != base.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn fits_ustar_name(p: &[u8]) -> bool {
    p.len() <= 100 && p.is_ascii()
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// Appends the header block(s) of `entry` (named `name` in the archive) to `out`.
/// `hardlink_to` turns the entry into a tar link entry; `size` is the data size that follows.
pub fn append_header(out: &mut Vec<u8>, entry: &Entry, name: &[u8], size: u64) {
    const MAX_OCTAL_8: u64 = 0o7777777; // 7 digits in 8-byte fields
    const MAX_OCTAL_12: u64 = 0o77777777777; // 11 digits in 12-byte fields
    let mut pax = Vec::new();
    if !fits_ustar_name(name) {
        pax_record(&mut pax, "path", name);
    }
    let link = entry.link.as_ref().map(|l| l.0.as_slice());
    if let Some(l) = link {
        if !fits_ustar_name(l) {
            pax_record(&mut pax, "linkpath", l);
        }
    }
    if size > MAX_OCTAL_12 {
        pax_record(&mut pax, "size", size.to_string().as_bytes());
    }
    let secs = entry.mtime_ns.div_euclid(1_000_000_000) as i64;
    let nanos = entry.mtime_ns.rem_euclid(1_000_000_000) as i64;
    if nanos != 0 || secs < 0 || secs as u64 > MAX_OCTAL_12 {
        let v = if nanos == 0 {
            secs.to_string()
        } else if secs >= 0 {
            format!("{secs}.{nanos:09}")
        } else {
            // PAX times are decimal fractions of the signed value.
            let total = entry.mtime_ns;
            format!(
                "-{}.{:09}",
                (-total) / 1_000_000_000,
                (-total) % 1_000_000_000
            )
        };
        pax_record(&mut pax, "mtime", v.as_bytes());
    }
    if entry.uid as u64 > MAX_OCTAL_8 {
        pax_record(&mut pax, "uid", entry.uid.to_string().as_bytes());
    }
    if entry.gid as u64 > MAX_OCTAL_8 {
        pax_record(&mut pax, "gid", entry.gid.to_string().as_bytes());
    }
    for (k, v) in entry.xattr_pairs() {
        let key = format!("SCHILY.xattr.{}", String::from_utf8_lossy(&k));
        pax_record(&mut pax, &key, &v);
    }

    if !pax.is_empty() {
        let mut h = tar::Header::new_ustar();
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(&name[name.len().saturating_sub(80)..]);
        let pname: Vec<u8> = pname
            .into_iter()
            .map(|b| if b.is_ascii() { b } else { b'_' })
            .collect();
        copy_field(&mut h.as_old_mut().name, &pname);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(pax.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&pax);
        pad(out);
    }

    let mut h = tar::Header::new_ustar();
    copy_field(&mut h.as_old_mut().name, name);
    let kind = match entry.kind {
        EntryType::File => tar::EntryType::Regular,
        EntryType::Dir => tar::EntryType::Directory,
        EntryType::Symlink => tar::EntryType::Symlink,
        EntryType::Hardlink => tar::EntryType::Link,
        EntryType::Fifo => tar::EntryType::Fifo,
        EntryType::Char => tar::EntryType::Char,
        EntryType::Block => tar::EntryType::Block,
    };
    h.set_entry_type(kind);
    h.set_mode(entry.mode & 0o7777);
    h.set_uid((entry.uid as u64).min(MAX_OCTAL_8));
    h.set_gid((entry.gid as u64).min(MAX_OCTAL_8));
    h.set_mtime(secs.clamp(0, MAX_OCTAL_12 as i64) as u64);
    h.set_size(size);
    if let Some(u) = &entry.user {
        let _ = h.set_username(u.as_ref());
    }
    if let Some(g) = &entry.group {
        let _ = h.set_groupname(g.as_ref());
    }
    if let Some(l) = link {
        copy_field(&mut h.as_old_mut().linkname, l);
    }
    if let Some(rdev) = entry.rdev {
        let major = rustix::fs::major(rdev);
        let minor = rustix::fs::minor(rdev);
        let _ = h.set_device_major(major);
        let _ = h.set_device_minor(minor);
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
}

/// Appends the zero padding that ends an entry's `size` bytes of data.
pub fn data_padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// The two zero blocks that end an archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::BytePath;

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [1usize, 80, 93, 94, 95, 990, 996] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'a'; n]);
            let text = String::from_utf8(out.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {n}");
        }
    }

    #[test]
    fn long_names_and_ns_times_read_back_with_the_tar_crate() {
        let name = [b"dir/".repeat(40), b"file \xff.txt".to_vec()].concat();
        let e = Entry {
            path: BytePath(name.clone()),
            kind: EntryType::File,
            size: 5,
            mode: 0o640,
            uid: 3_000_000,
            gid: 7,
            user: Some("someone".into()),
            group: None,
            mtime_ns: 1_795_614_195_123_456_789,
            ctime_ns: 0,
            ino: 1,
            dev: 1,
            nlink: 1,
            link: None,
            rdev: None,
            xattrs: vec![(BytePath(b"user.a".to_vec()), hex::encode(b"v\0x"))],
            stored_in: None,
            incomplete: false,
        };
        let mut out = Vec::new();
        append_header(&mut out, &e, &name, 5);
        out.extend_from_slice(b"hello");
        out.resize(out.len() + data_padding(5), 0);
        out.extend_from_slice(&END_OF_ARCHIVE);
        let mut ar = tar::Archive::new(&out[..]);
        let mut entries = ar.entries().unwrap();
        let mut ent = entries.next().unwrap().unwrap();
        assert_eq!(&*ent.path_bytes(), &name[..]);
        let pax: Vec<(String, Vec<u8>)> = ent
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        assert!(pax.contains(&("mtime".into(), b"1795614195.123456789".to_vec())));
        assert!(pax.contains(&("uid".into(), b"3000000".to_vec())));
        assert!(pax.contains(&("SCHILY.xattr.user.a".into(), b"v\0x".to_vec())));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut ent, &mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
