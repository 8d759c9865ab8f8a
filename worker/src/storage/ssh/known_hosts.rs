//! Host-key checking of the SSH backend: the entries of an OpenSSH `known_hosts` file that apply
//! to one host and port (plain, `[host]:port`, wildcard, negated and hashed `|1|...` entries,
//! `@revoked` markers), the decision on a server's key with a message saying what to do, and the
//! russh handler that applies it during the handshake.

use crate::error::{Error, Result};
use russh::client;
use russh::keys::{HashAlg, PublicKey};
use std::path::PathBuf;
use std::sync::Arc;

/// The russh handler: decides on the server's host key from the `known_hosts` entries, and
/// keeps the reason of a refusal for the error message (russh itself only says "unknown key").
pub(super) struct HostKeyCheck {
    pub(super) known: KnownHosts,
    pub(super) refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let verdict = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.known.check(key),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => Err(format!(
                "{} presented a host certificate, which is not supported: list its host key in {}",
                self.known.host_port,
                self.known.path.display()
            )),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                Ok(false)
            }
        }
    }
}

/// The entries of an OpenSSH `known_hosts` file that apply to one host and port.
#[derive(Debug)]
pub(super) struct KnownHosts {
    path: PathBuf,
    host: String,
    port: u16,
    /// `host:port`, for messages.
    host_port: String,
    /// Whether the file exists at all.
    exists: bool,
    /// `(line number, key)` of the plain entries for this host.
    keys: Vec<(usize, PublicKey)>,
    /// `(line number, key)` of the `@revoked` entries for this host.
    revoked: Vec<(usize, PublicKey)>,
}

impl KnownHosts {
    /// Reads the entries for `host:port` from `path`. A missing file has no entries; an
    /// unreadable one is an error.
    pub(super) fn load(path: &std::path::Path, host: &str, port: u16) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::failure(format!(
                    "cannot read the known_hosts file {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(Self::parse(path, host, port, text.as_deref()))
    }

    fn parse(path: &std::path::Path, host: &str, port: u16, text: Option<&str>) -> Self {
        let mut known = KnownHosts {
            path: path.to_path_buf(),
            host: host.to_string(),
            port,
            host_port: format!("{host}:{port}"),
            exists: text.is_some(),
            keys: Vec::new(),
            revoked: Vec::new(),
        };
        // OpenSSH looks up `host` on port 22 and `[host]:port` on any other.
        let name = if port == 22 {
            host.to_ascii_lowercase()
        } else {
            format!("[{}]:{port}", host.to_ascii_lowercase())
        };
        for (i, line) in text.unwrap_or_default().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else { continue };
            let (marker, hosts) = if first.starts_with('@') {
                match fields.next() {
                    Some(h) => (Some(first), h),
                    None => continue,
                }
            } else {
                (None, first)
            };
            let (Some(_key_type), Some(base64)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !host_matches(hosts, &name) {
                continue;
            }
            let Ok(key) = russh::keys::parse_public_key_base64(base64) else {
                tracing::debug!(file = %path.display(), line = i + 1, "unparsable known_hosts key");
                continue;
            };
            match marker {
                None => known.keys.push((i + 1, key)),
                Some("@revoked") => known.revoked.push((i + 1, key)),
                // `@cert-authority`: host certificates are not used; other markers are unknown.
                Some(_) => {}
            }
        }
        known
    }

    /// Host key algorithms to offer, those with a known key for this host first (so a server
    /// with several host keys presents one we can check), then the rest of `defaults`.
    pub(super) fn preferred_algorithms(
        &self,
        defaults: &[russh::keys::Algorithm],
    ) -> Vec<russh::keys::Algorithm> {
        use russh::keys::Algorithm;
        let mut out: Vec<Algorithm> = Vec::new();
        for (_, key) in &self.keys {
            let algs = match key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            for a in algs {
                if defaults.contains(&a) && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        for a in defaults {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Accepts `key` when a plain entry for this host lists it and no `@revoked` entry does;
    /// otherwise says why not and what to do.
    fn check(&self, key: &PublicKey) -> std::result::Result<(), String> {
        let path = self.path.display();
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let alg = key.algorithm();
        let alg = alg.as_str();
        if let Some((line, _)) = self
            .revoked
            .iter()
            .find(|(_, k)| k.key_data() == key.key_data())
        {
            return Err(format!(
                "host key of {} ({alg} {fingerprint}) is marked @revoked in {path} line {line}: \
                 refusing to connect",
                self.host_port
            ));
        }
        if self
            .keys
            .iter()
            .any(|(_, k)| k.key_data() == key.key_data())
        {
            return Ok(());
        }
        let lookup = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        if let Some((line, old)) = self
            .keys
            .iter()
            .find(|(_, k)| k.algorithm() == key.algorithm())
        {
            return Err(format!(
                "host key CHANGED for {}: the server presents {alg} {fingerprint}, but {path} \
                 line {line} records {}; refusing to connect. Someone may be intercepting the \
                 connection; if the host was reinstalled or its key replaced on purpose, remove \
                 the old entry with `ssh-keygen -R '{lookup}' -f {path}` and add the new key",
                self.host_port,
                old.fingerprint(HashAlg::Sha256)
            ));
        }
        let scan = if self.port == 22 {
            format!("ssh-keyscan {}", self.host)
        } else {
            format!("ssh-keyscan -p {} {}", self.port, self.host)
        };
        let note = if !self.exists {
            " (the file does not exist)".to_string()
        } else if let Some((line, other)) = self.keys.first() {
            format!(
                " (line {line} has a {} key for it, but the server offers {alg})",
                other.algorithm().as_str()
            )
        } else {
            String::new()
        };
        Err(format!(
            "host key of {} ({alg} {fingerprint}) is not in {path}{note}: add it with \
             `{scan} >> {path}` after checking the fingerprint with the host's administrator; \
             refusing to connect",
            self.host_port
        ))
    }
}

/// Whether the comma-separated `patterns` of a known_hosts line match `name` (already
/// lowercased; `[host]:port` for ports other than 22): hashed `|1|salt|hash` entries, `*` and `?`
/// wildcards, and `!` negations, which win over any positive match.
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(negated, name) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(&pattern, name),
        }
    }
    matched
}

/// `salt|hash` (base64) of a hashed entry: the hash is HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(salt_hash: &str, name: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((salt, hash)) = salt_hash.split_once('|') else {
        return false;
    };
    let b64 = data_encoding::BASE64;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt.as_bytes()), b64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Glob matching with `*` (any run) and `?` (any one character), as OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn wildcards_and_negation() {
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("10.0.0.?", "10.0.0.7"));
        assert!(wildcard_match("[127.0.0.1]:*", "[127.0.0.1]:2222"));
        assert!(host_matches("a,b,[c]:2222", "[c]:2222"));
        assert!(!host_matches("a,b,c", "[c]:2222"));
        assert!(!host_matches(
            "*.example.com,!bad.example.com",
            "bad.example.com"
        ));
        assert!(host_matches(
            "*.example.com,!bad.example.com",
            "ok.example.com"
        ));
        assert!(host_matches("Host.Example.COM", "host.example.com"));
    }

    #[test]
    fn hashed_entries_match() {
        // From russh's tests: `example.com` hashed by `ssh-keygen -H`.
        assert!(host_matches(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=",
            "example.com"
        ));
        assert!(!host_matches(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=",
            "example.org"
        ));
    }

    #[test]
    fn known_hosts_decisions() {
        let text = format!(
            "# comment\n\
             \n\
             other.host ssh-ed25519 {ED_B}\n\
             [127.0.0.1]:2222\tssh-ed25519   {ED_A} comment here\n\
             @cert-authority * ssh-ed25519 {ED_B}\n\
             garbage line\n\
             127.0.0.1 ssh-ed25519 {ED_B}\n"
        );
        let path = Path::new("/k/known_hosts");
        let k = KnownHosts::parse(path, "127.0.0.1", 2222, Some(&text));
        assert_eq!(k.keys.len(), 1, "{k:?}");
        assert!(k.check(&key(ED_A)).is_ok());
        let changed = k.check(&key(ED_B)).unwrap_err();
        assert!(
            changed.contains("host key CHANGED for 127.0.0.1:2222"),
            "{changed}"
        );
        assert!(changed.contains("line 4"), "{changed}");
        assert!(
            changed.contains("ssh-keygen -R '[127.0.0.1]:2222'"),
            "{changed}"
        );

        // Port 22 looks up the bare name, which has the other key.
        let k22 = KnownHosts::parse(path, "127.0.0.1", 22, Some(&text));
        assert!(k22.check(&key(ED_B)).is_ok());

        let unknown = KnownHosts::parse(path, "10.1.1.1", 2222, Some(&text))
            .check(&key(ED_A))
            .unwrap_err();
        assert!(
            unknown.contains("host key of 10.1.1.1:2222 (ssh-ed25519 SHA256:")
                && unknown.contains("is not in /k/known_hosts: add it with `ssh-keyscan -p 2222 10.1.1.1 >> /k/known_hosts`"),
            "{unknown}"
        );
        let missing = KnownHosts::parse(path, "h", 22, None)
            .check(&key(ED_A))
            .unwrap_err();
        assert!(missing.contains("(the file does not exist)"), "{missing}");
        assert!(
            missing.contains("`ssh-keyscan h >> /k/known_hosts`"),
            "{missing}"
        );

        let revoked = format!("h ssh-ed25519 {ED_A}\n@revoked h ssh-ed25519 {ED_A}\n");
        let err = KnownHosts::parse(path, "h", 22, Some(&revoked))
            .check(&key(ED_A))
            .unwrap_err();
        assert!(err.contains("@revoked"), "{err}");
    }

    #[test]
    fn known_algorithms_come_first() {
        use russh::keys::Algorithm;
        let rsa_line = "h ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCk9Sb/K5SVwhMDDjHt8U/ejHm8WZamyENIOK7O5np03LBTrkS/eCKrB2aWFg1xEc3WOizj7U4qPrW+m3cxrLlyBfM0ZvGTy1JCWjU/k3UvB9UBkvSzgU5DB4AbneG+bZjIbN49zzJruWP/Agb5AatYkrfpD+SpuHGO+D7Yuc+q7w==";
        let k = KnownHosts::parse(Path::new("/k"), "h", 22, Some(rsa_line));
        assert_eq!(k.keys.len(), 1);
        let algs = k.preferred_algorithms(&russh::Preferred::default().key);
        assert_eq!(
            algs[0],
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        );
        assert!(algs.contains(&Algorithm::Ed25519));
    }
}
