//! Error mapping of the SSH backend: turns russh, russh-sftp and key-loading errors into engine
//! errors that say what failed, where, and whether a retry can help (connection trouble is
//! transient; refusals, denied permissions and a full disk are permanent).

use super::{SshStorage, REQUEST_TIMEOUT};
use crate::error::{Error, ErrorKind};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use std::path::Path;

/// Why the client key at `path` cannot be used: a passphrase, an unreadable file or a file that
/// is not a private key, each with what to do.
pub(super) fn key_error(path: &Path, e: russh::keys::Error) -> Error {
    let path = path.display();
    match e {
        russh::keys::Error::KeyIsEncrypted => Error::failure(format!(
            "SSH key file {path} is protected by a passphrase, which Freezer cannot prompt for"
        ))
        .with_guidance(
            "use a key without a passphrase (and restrict it on the server, e.g. to the sftp \
             subsystem)",
        ),
        russh::keys::Error::IO(io) => {
            Error::failure(format!("cannot read SSH key file {path}: {io}"))
                .with_guidance("check key_file in the storage configuration")
        }
        other => Error::failure(format!(
            "SSH key file {path} is not a usable private key: {other}"
        )),
    }
}

impl SshStorage {
    /// An SSH-level error while connecting: connection trouble is transient, protocol
    /// disagreements are not.
    pub(super) fn ssh_error(&self, doing: &str, e: russh::Error) -> Error {
        use russh::Error as E;
        match e {
            E::IO(_)
            | E::HUP
            | E::Disconnect
            | E::ConnectionTimeout
            | E::KeepaliveTimeout
            | E::InactivityTimeout
            | E::Elapsed(_)
            | E::SendError
            | E::Join(_)
            | E::Pending => {
                Error::transient(format!("{doing} {}: the connection failed: {e}", self.url))
            }
            E::UnknownKey => Error::failure(format!(
                "{doing} {}: the server's host key was refused",
                self.url
            ))
            .with_guidance("add the server's key to the storage's known_hosts file"),
            other => Error::failure(format!("{doing} {} failed: {other}", self.url)),
        }
    }

    /// Turns an SFTP error of `doing` (`"reading ssh://..."`) into an engine error: connection
    /// trouble is transient ([`Conn::call`](super::session::Conn::call) has marked the connection broken already), refusals
    /// are permanent. `writing`: a generic failure status may be a full disk.
    pub(super) fn sftp_error(&self, doing: &str, e: SftpError, writing: bool) -> Error {
        match e {
            SftpError::Status(status) => {
                let detail = if status.error_message.is_empty() {
                    status.status_code.to_string()
                } else {
                    status.error_message.clone()
                };
                match status.status_code {
                    StatusCode::NoSuchFile => {
                        Error::not_found(format!("{doing}: no such file or directory"))
                    }
                    StatusCode::PermissionDenied => {
                        Error::failure(format!("{doing}: permission denied ({detail})"))
                            .with_guidance(format!(
                                "check that {} may read and write {} on {}",
                                self.config.user, self.root, self.config.host
                            ))
                    }
                    StatusCode::Failure if writing => Error::failure(format!(
                        "{doing} failed on the server ({detail}): the remote disk may be full"
                    ))
                    .with_guidance(format!(
                        "check free space and quotas on {}",
                        self.config.host
                    )),
                    StatusCode::NoConnection | StatusCode::ConnectionLost => {
                        Error::transient(format!(
                            "{doing}: the SFTP connection was lost ({detail}); the next attempt \
                             connects again"
                        ))
                    }
                    _ => Error::failure(format!("{doing} failed: {detail}")),
                }
            }
            SftpError::Timeout => Error::transient(format!(
                "{doing}: no answer from {} within {} s; the next attempt connects again",
                self.host_port(),
                REQUEST_TIMEOUT.as_secs()
            )),
            SftpError::Limited(m) => Error::failure(format!("{doing}: {m}")),
            SftpError::IO(m) | SftpError::UnexpectedBehavior(m) => Error::transient(format!(
                "{doing}: the SSH connection to {} was lost ({m}); the next attempt connects \
                     again",
                self.host_port()
            )),
            SftpError::UnexpectedPacket => Error::transient(format!(
                "{doing}: the SFTP server sent an unexpected reply; the next attempt connects again"
            )),
        }
    }

    pub(super) fn container_error(&self, e: SftpError) -> Error {
        let err = self.sftp_error(
            &format!("checking container {}", self.url_of(&self.root)),
            e,
            false,
        );
        if err.kind == ErrorKind::NotFound {
            return self.container_missing();
        }
        err
    }

    fn container_missing(&self) -> Error {
        Error::not_found(format!(
            "container {} does not exist",
            self.url_of(&self.root)
        ))
    }
}
