//! The worker's `[policy]` ([`crate::config::PolicySection`]) applied to a task before anything
//! runs: anyone who can publish to the broker can send a task, so a task may read, write and act
//! for only what the operator of this node allowed. Each refusal is a usage error (class
//! `permanent`) whose message starts with `policy:` and names the rule, e.g.
//! `policy: restore_abs_path /root/.ssh is outside [policy] restore_roots`.
//!
//! The rules, for tasks only (the command line is run by the node's root, who needs no policy):
//!
//! - **Paths** (`path_to_backup` in `backup_roots`; `restore_abs_path` and `compare_to` in
//!   `restore_roots`): a path with a `..` component is refused; the rest is resolved like
//!   `realpath` as far as it exists (so a symlink inside a root that points out of it is caught),
//!   and must then lie in a root, compared by whole components (`/data2` is not in `/data`). No
//!   roots configured: the kind is refused (secure default; `["/"]` allows everything).
//!   A check is made once, at resolve time: someone who can change the tree between the check
//!   and the run (a local user owning a directory in a root) can still move it; roots should be
//!   trees only root writes.
//! - **Symlinks followed by a backup** (`dereference_symlink` `soft` or `all`) may lead anywhere,
//!   so they are allowed only with `backup_roots = ["/"]`.
//! - **Hosts**: a task's host name is this worker's own (`[daemon] hostname`, else the machine's)
//!   or one listed in `hosts`, or any when `hosts` holds `"*"`; a list or prune of every host
//!   needs `"*"`.
//! - **Containers**: a task's `container` replaces the named storage's own, so it must stay
//!   inside it: for a local storage, a directory under the configured one (resolved as paths
//!   above); for S3, the same bucket and a prefix under the configured prefix; for SSH, a remote
//!   directory under the configured one (compared by components: remote symlinks are not seen
//!   from here). A storage without a configured container takes none from a task.

use crate::config::{StorageEntry, WorkerConfig};
use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// The guidance every refusal carries.
const GUIDANCE: &str =
    "the worker's [policy] section (see its configuration) says what tasks may do on this node; \
     an operator changes it there";

/// A refusal naming the rule.
fn refuse(message: String) -> Error {
    Error::usage(format!("policy: {message}")).with_guidance(GUIDANCE)
}

/// Which setting a path is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// `backup_roots`: what a backup reads.
    Backup,
    /// `restore_roots`: what a restore writes and a verify compares with.
    Restore,
}

impl Roots {
    fn name(self) -> &'static str {
        match self {
            Roots::Backup => "backup_roots",
            Roots::Restore => "restore_roots",
        }
    }

    fn of(self, config: &WorkerConfig) -> &[PathBuf] {
        match self {
            Roots::Backup => &config.policy.backup_roots,
            Roots::Restore => &config.policy.restore_roots,
        }
    }
}

/// Checks that `path` (the task's `field`) lies in one of the `roots` of the configuration.
pub fn check_path(config: &WorkerConfig, roots: Roots, field: &str, path: &Path) -> Result<()> {
    let allowed = roots.of(config);
    if allowed.is_empty() {
        return Err(refuse(format!(
            "{field} {}: no [policy] {} are configured, so this worker runs no such task \
             (set {} to the directories tasks may use, or [\"/\"] for any)",
            path.display(),
            roots.name(),
            roots.name()
        )));
    }
    let resolved =
        resolve(path).map_err(|why| refuse(format!("{field} {}: {why}", path.display())))?;
    let inside = allowed
        .iter()
        .filter_map(|r| resolve(r).ok())
        .any(|r| resolved.starts_with(r));
    if inside {
        Ok(())
    } else {
        let shown = if resolved == path {
            String::new()
        } else {
            format!(" (resolved to {})", resolved.display())
        };
        Err(refuse(format!(
            "{field} {}{shown} is outside [policy] {}",
            path.display(),
            roots.name()
        )))
    }
}

/// Checks that a backup following symlinks (`dereference`: `soft` or `all`) is allowed: only
/// when `backup_roots` holds `/`, since a followed link may point anywhere.
pub fn check_follows_links(config: &WorkerConfig, follows: bool) -> Result<()> {
    if !follows
        || config
            .policy
            .backup_roots
            .iter()
            .any(|r| resolve(r).is_ok_and(|r| r == Path::new("/")))
    {
        return Ok(());
    }
    Err(refuse(
        "dereference_symlink soft or all may follow links out of [policy] backup_roots; \
         allowed only with backup_roots = [\"/\"]"
            .into(),
    ))
}

/// Checks that a task may act for `host` (`None`: every host, for a list or a prune).
pub fn check_host(config: &WorkerConfig, host: Option<&str>) -> Result<()> {
    let any = config.policy.hosts.iter().any(|h| h == "*");
    match host {
        _ if any => Ok(()),
        None => Err(refuse(
            "a task acting for every host needs hosts = [\"*\"] in [policy]; name a hostname"
                .into(),
        )),
        Some(h) => {
            let own = super::host(config, None)?;
            if h == own || config.policy.hosts.iter().any(|a| a == h) {
                Ok(())
            } else {
                Err(refuse(format!(
                    "hostname {h:?} is not this worker's ({own:?}) and not in [policy] hosts"
                )))
            }
        }
    }
}

/// Checks that a task's `container` (none: each storage's own) stays inside the configured
/// location of each named storage.
pub fn check_container(
    config: &WorkerConfig,
    storages: &[String],
    container: Option<&str>,
) -> Result<()> {
    let Some(given) = container else {
        return Ok(());
    };
    for name in storages {
        let Some(entry) = config.storages.get(name) else {
            return Err(refuse(format!("storage {name:?} is not configured")));
        };
        let inside: Inside = match entry {
            StorageEntry::Local(_) => local_inside,
            StorageEntry::S3(_) => s3_inside,
            StorageEntry::Ssh(_) => ssh_inside,
        };
        let Some(own) = entry.container().filter(|c| !c.trim().is_empty()) else {
            return Err(refuse(format!(
                "container {given:?}: storage {name:?} has no configured container, so a task \
                 may not choose one"
            )));
        };
        match inside(given, own) {
            Ok(true) => {}
            Ok(false) => {
                return Err(refuse(format!(
                    "container {given:?} is outside storage {name:?}'s configured container {own:?}"
                )))
            }
            Err(why) => return Err(refuse(format!("container {given:?}: {why}"))),
        }
    }
    Ok(())
}

/// Whether a task's container lies in a storage's configured one (an error says why neither).
type Inside = fn(&str, &str) -> std::result::Result<bool, String>;

/// A local container: a directory under the configured one, symlinks resolved.
fn local_inside(given: &str, own: &str) -> std::result::Result<bool, String> {
    if !Path::new(given).is_absolute() {
        return Err("a task's container for a local storage must be absolute".into());
    }
    Ok(resolve(Path::new(given))?.starts_with(resolve(
        &std::path::absolute(own).map_err(|e| e.to_string())?,
    )?))
}

/// An S3 container `bucket/prefix`: the same bucket, a prefix under the configured prefix.
fn s3_inside(given: &str, own: &str) -> std::result::Result<bool, String> {
    let parts = |c: &str| -> std::result::Result<Vec<String>, String> {
        let rest = c.strip_prefix("s3://").unwrap_or(c);
        let parts: Vec<String> = rest
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if parts.iter().any(|p| p == "." || p == "..") {
            return Err("`.` and `..` are not allowed in an S3 container".into());
        }
        Ok(parts)
    };
    let (given, own) = (parts(given)?, parts(own)?);
    Ok(!given.is_empty() && given.starts_with(&own))
}

/// An SSH container: a remote directory under the configured one, by components.
fn ssh_inside(given: &str, own: &str) -> std::result::Result<bool, String> {
    let parts = |c: &str| -> std::result::Result<(bool, Vec<String>), String> {
        let p = Path::new(c);
        let mut out = Vec::new();
        for comp in p.components() {
            match comp {
                Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                Component::ParentDir => return Err("`..` is not allowed in a container".into()),
            }
        }
        Ok((p.is_absolute(), out))
    };
    let ((g_abs, given), (o_abs, own)) = (parts(given)?, parts(own)?);
    Ok(g_abs == o_abs && given.starts_with(&own))
}

/// `path` as `realpath` would give it, as far as it exists: `..` refused, `.` dropped, the
/// longest existing ancestor canonicalized (symlinks resolved) and the rest appended. A symlink
/// that exists but cannot be resolved (dangling, or a loop) is refused: writing through it would
/// land wherever it points.
pub fn resolve(path: &Path) -> std::result::Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    let mut parts = Vec::new();
    for comp in path.components() {
        match comp {
            Component::ParentDir => return Err("`..` is not allowed".into()),
            Component::Normal(n) => parts.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    // The deepest ancestor that exists (lstat: a dangling symlink exists).
    let mut existing = parts.len();
    loop {
        let candidate: PathBuf = std::iter::once(Path::new("/").as_os_str())
            .chain(parts[..existing].iter().copied())
            .collect();
        if std::fs::symlink_metadata(&candidate).is_ok() {
            let mut real = std::fs::canonicalize(&candidate).map_err(|e| {
                format!(
                    "{} cannot be resolved ({e}): a dangling or looping symlink",
                    candidate.display()
                )
            })?;
            real.extend(&parts[existing..]);
            return Ok(real);
        }
        if existing == 0 {
            return Err("/ does not exist".into());
        }
        existing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn config(text: &str) -> WorkerConfig {
        WorkerConfig::parse(text, "t").unwrap()
    }

    #[test]
    fn resolve_refuses_dotdot_and_follows_symlinks_where_the_path_exists() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("data")).unwrap();
        symlink("/etc", base.join("data/etc")).unwrap();
        symlink(base.join("nowhere"), base.join("data/dangling")).unwrap();
        assert!(resolve(&base.join("data/../x")).is_err());
        assert!(resolve(Path::new("data")).is_err());
        assert_eq!(
            resolve(&base.join("data/./new/dir")).unwrap(),
            base.join("data/new/dir")
        );
        assert_eq!(
            resolve(&base.join("data/etc/x")).unwrap(),
            std::fs::canonicalize("/etc").unwrap().join("x")
        );
        assert!(resolve(&base.join("data/dangling/x")).is_err());
    }

    #[test]
    fn paths_must_lie_in_a_root_by_whole_components() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for d in ["data", "data2", "data/sub"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        symlink("/etc", base.join("data/sub/out")).unwrap();
        let c = config(&format!(
            "[policy]\nbackup_roots = [{:?}]\n",
            base.join("data").display().to_string()
        ));
        let ok = |p: &str| check_path(&c, Roots::Backup, "path_to_backup", &base.join(p));
        ok("data").unwrap();
        ok("data/sub").unwrap();
        ok("data/not-yet").unwrap();
        let e = ok("data2").unwrap_err();
        assert!(e.message.contains("outside [policy] backup_roots"), "{e}");
        let e = ok("data/sub/out").unwrap_err();
        assert!(e.message.contains("resolved to"), "{e}");
        let e = ok("data/../data2").unwrap_err();
        assert!(e.message.contains("`..`"), "{e}");
        let e = check_path(
            &c,
            Roots::Restore,
            "restore_abs_path",
            Path::new("/root/.ssh"),
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("policy: restore_abs_path /root/.ssh"),
            "{e}"
        );
        assert!(e.message.contains("no [policy] restore_roots"), "{e}");
        assert_eq!(e.class(), freezer_contracts::ErrorClass::Permanent);
    }

    #[test]
    fn following_links_needs_the_whole_tree() {
        check_follows_links(&config("[policy]\nbackup_roots = [\"/\"]\n"), true).unwrap();
        check_follows_links(&config("[policy]\nbackup_roots = [\"/srv\"]\n"), false).unwrap();
        let e = check_follows_links(&config("[policy]\nbackup_roots = [\"/srv\"]\n"), true)
            .unwrap_err();
        assert!(e.message.contains("dereference_symlink"), "{e}");
    }

    #[test]
    fn hosts_are_the_own_one_unless_listed() {
        let own = config("[daemon]\nnode = \"n\"\nhostname = \"me\"\n");
        check_host(&own, Some("me")).unwrap();
        let e = check_host(&own, Some("other")).unwrap_err();
        assert!(e.message.contains("not in [policy] hosts"), "{e}");
        assert!(check_host(&own, None).is_err());
        let listed =
            config("[daemon]\nnode = \"n\"\nhostname = \"me\"\n[policy]\nhosts = [\"web2\"]\n");
        check_host(&listed, Some("web2")).unwrap();
        assert!(check_host(&listed, Some("web3")).is_err());
        let any = config("[policy]\nhosts = [\"*\"]\n");
        check_host(&any, Some("web3")).unwrap();
        check_host(&any, None).unwrap();
    }

    #[test]
    fn containers_stay_inside_the_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("store/a")).unwrap();
        std::fs::create_dir_all(base.join("store2")).unwrap();
        symlink("/", base.join("store/root")).unwrap();
        let c = config(&format!(
            "[storages.l]\ntype = \"local\"\ncontainer = {:?}\n\
             [storages.o]\ntype = \"s3\"\ncontainer = \"bucket/fleet\"\n\
             [storages.v]\ntype = \"ssh\"\ncontainer = \"/srv/b\"\nhost = \"h\"\nkey_file = \"/k\"\n\
             [storages.bare]\ntype = \"local\"\n",
            base.join("store").display().to_string()
        ));
        let check = |s: &str, c2: &str| check_container(&c, &[s.to_string()], Some(c2));
        check_container(&c, &["l".into(), "o".into()], None).unwrap();
        check("l", base.join("store").to_str().unwrap()).unwrap();
        check("l", base.join("store/a/b").to_str().unwrap()).unwrap();
        for bad in ["/", "store2", "store/root/etc"] {
            let p = if bad == "/" {
                "/".into()
            } else {
                base.join(bad)
            };
            let e = check("l", p.to_str().unwrap()).unwrap_err();
            assert!(e.message.starts_with("policy: container"), "{bad}: {e}");
        }
        assert!(check("l", "store/a").is_err());
        check("o", "bucket/fleet").unwrap();
        check("o", "s3://bucket/fleet/web1").unwrap();
        for bad in [
            "bucket",
            "bucket/fleet2",
            "other/fleet",
            "bucket/fleet/../x",
        ] {
            assert!(check("o", bad).is_err(), "{bad}");
        }
        check("v", "/srv/b/web1").unwrap();
        for bad in ["/", "/srv", "/srv/bb", "srv/b", "/srv/b/../c"] {
            assert!(check("v", bad).is_err(), "{bad}");
        }
        let e = check("bare", "/tmp").unwrap_err();
        assert!(e.message.contains("no configured container"), "{e}");
    }
}
