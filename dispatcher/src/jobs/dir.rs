//! The jobs directory: every `*.toml` file in `jobs_dir` (not hidden, not in subdirectories),
//! read into one [`JobSet`], and a watcher that keeps it current.
//!
//! Rules:
//!
//! - Files are read in name order. A job id already defined by an earlier file makes the later
//!   file broken (its error names both files).
//! - A broken file (syntax, a bad job, a duplicate id, unreadable) is reported in
//!   [`JobSet::errors`] and does not stop the others. **Its jobs keep their last good definition**
//!   (from the set the watcher had before), so a typo saved in the middle of an edit neither
//!   deletes a nightly backup nor runs half a definition; `freezer-dispatcher jobs` shows the error
//!   until the file is fixed. A file broken since the dispatcher started has no jobs. A deleted file
//!   takes its jobs with it.
//! - A directory that cannot be read (missing, permissions) is reported the same way and keeps the
//!   jobs already loaded.
//!
//! The watcher ([`watch_dir`]) re-reads every job file each interval (1 s in service) and compares
//! the contents with the last read, so any change (an edit within the same second, a file renamed
//! into place, a change on a network file system with coarse times) is seen, and nothing is
//! re-parsed while nothing changed. Job files are small; reading them each second costs nothing
//! worth a file-notification dependency.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::{JobFileError, ReadError};
use super::file::parse_jobs;
use super::model::Job;

/// How often the service re-reads the jobs directory.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A problem with one job file (or with the directory itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    /// The file (or the directory).
    pub file: PathBuf,
    /// What is wrong (`job "x": action[0].kind: ...`).
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// Every job currently defined, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct JobSet {
    /// Jobs by id.
    pub jobs: BTreeMap<String, Arc<Job>>,
    /// Broken files, one entry per problem, in file order.
    pub errors: Vec<LoadError>,
}

impl JobSet {
    /// The job `id`, if defined.
    pub fn get(&self, id: &str) -> Option<&Arc<Job>> {
        self.jobs.get(id)
    }

    /// The jobs that have a schedule (the others run only when asked).
    pub fn scheduled(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs.values().filter(|j| j.schedule.is_some())
    }
}

/// What one read of the directory found: file -> content (or why it could not be read); the
/// directory's own error if it could not be listed.
type DirContents = Result<BTreeMap<PathBuf, Result<String, ReadError>>, ReadError>;

/// Loads `dir` once. `previous` is the set loaded before, whose jobs stand in for those of files
/// that are now broken (see the module doc); `None` at start-up and for one-off commands.
pub fn load_dir(dir: &Path, previous: Option<&JobSet>) -> JobSet {
    build(dir, read_dir(dir), previous)
}

/// Loads `dir`, then re-reads it every `interval` and publishes each changed [`JobSet`] on the
/// returned channel. The task stops when every receiver is dropped (or when its handle is
/// aborted). Call it inside a Tokio runtime.
pub fn watch_dir(
    dir: PathBuf,
    interval: Duration,
) -> (watch::Receiver<Arc<JobSet>>, JoinHandle<()>) {
    let contents = read_dir(&dir);
    let set = build(&dir, contents.clone(), None);
    log_set(&set, None);
    let (tx, rx) = watch::channel(Arc::new(set));
    let handle = tokio::spawn(async move {
        let mut last = contents;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return,
            }
            let d = dir.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || read_dir(&d)).await else {
                continue;
            };
            if now == last {
                continue;
            }
            let previous = tx.borrow().clone();
            let set = build(&dir, now.clone(), Some(&previous));
            log_set(&set, Some(&previous));
            last = now;
            tx.send_replace(Arc::new(set));
        }
    });
    (rx, handle)
}

/// Logs what a (re)load found: the job count, and errors that are new.
fn log_set(set: &JobSet, previous: Option<&JobSet>) {
    tracing::info!(
        message = "job files loaded",
        jobs = set.jobs.len(),
        broken = set.errors.len()
    );
    for e in &set.errors {
        if previous.is_none_or(|p| !p.errors.contains(e)) {
            tracing::warn!(message = "job file not loaded", file = %e.file.display(), error = %e.message);
        }
    }
}

/// Reads every `*.toml` file of `dir` (regular files, not hidden).
fn read_dir(dir: &Path) -> DirContents {
    let entries = std::fs::read_dir(dir)?;
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // Follows symlinks, so a file linked into the directory counts.
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() => continue,
            Ok(_) => files.insert(
                path.clone(),
                std::fs::read_to_string(&path).map_err(ReadError::from),
            ),
            Err(e) => files.insert(path, Err(e.into())),
        };
    }
    Ok(files)
}

/// Builds the set from what was read (see the module doc for the rules).
fn build(dir: &Path, contents: DirContents, previous: Option<&JobSet>) -> JobSet {
    let mut set = JobSet::default();
    let files = match contents {
        Ok(files) => files,
        Err(e) => {
            set.errors.push(LoadError {
                file: dir.to_path_buf(),
                message: JobFileError::ReadDir(e).to_string(),
            });
            if let Some(p) = previous {
                set.jobs = p.jobs.clone();
            }
            return set;
        }
    };
    for (path, text) in files {
        let parsed = text
            .map_err(|e| vec![JobFileError::ReadFile(e)])
            .and_then(|t| parse_jobs(&path, &t));
        let parsed = parsed.and_then(|jobs| {
            let dups: Vec<JobFileError> = jobs
                .iter()
                .filter_map(|j| {
                    set.jobs
                        .get(&j.id)
                        .map(|other| JobFileError::AlreadyDefined {
                            id: j.id.clone(),
                            other: other.file.clone(),
                        })
                })
                .collect();
            if dups.is_empty() {
                Ok(jobs)
            } else {
                Err(dups)
            }
        });
        match parsed {
            Ok(jobs) => {
                for job in jobs {
                    set.jobs.insert(job.id.clone(), Arc::new(job));
                }
            }
            Err(errors) => {
                set.errors.extend(errors.iter().map(|e| LoadError {
                    file: path.clone(),
                    message: e.to_string(),
                }));
                let kept = previous
                    .into_iter()
                    .flat_map(|p| p.jobs.values())
                    .filter(|j| j.file == path);
                for job in kept {
                    set.jobs
                        .entry(job.id.clone())
                        .or_insert_with(|| job.clone());
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::When;

    fn job(id: &str, every: &str) -> String {
        format!(
            "[[job]]\nid = \"{id}\"\nnode = \"n1\"\nschedule = {{ every = \"{every}\" }}\n\
             [[job.action]]\nkind = \"noop\"\n"
        )
    }

    fn every(set: &JobSet, id: &str) -> Duration {
        match set.get(id).unwrap().schedule.as_ref().unwrap().when {
            When::Every(d) => d,
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loads_toml_files_and_reports_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), job("a", "1m")).unwrap();
        std::fs::write(dir.path().join("b.toml"), "[[job]]\nid = \n").unwrap();
        std::fs::write(dir.path().join("c.toml.bak"), "garbage").unwrap();
        std::fs::write(dir.path().join(".d.toml"), "garbage").unwrap();
        std::fs::create_dir(dir.path().join("sub.toml")).unwrap();
        let set = load_dir(dir.path(), None);
        assert_eq!(set.jobs.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(set.errors.len(), 1, "{:?}", set.errors);
        assert_eq!(set.errors[0].file, dir.path().join("b.toml"));
        assert_eq!(set.scheduled().count(), 1);
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_jobs_and_a_deleted_one_loses_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b.toml");
        std::fs::write(dir.path().join("a.toml"), job("a", "1m")).unwrap();
        std::fs::write(&b, format!("{}{}", job("b1", "2m"), job("b2", "3m"))).unwrap();
        let first = load_dir(dir.path(), None);
        assert_eq!(first.jobs.len(), 3);
        std::fs::write(&b, format!("{}{}", job("b1", "5m"), job("b2", "never"))).unwrap();
        let second = load_dir(dir.path(), Some(&first));
        assert_eq!(second.jobs.len(), 3);
        assert_eq!(
            every(&second, "b1"),
            Duration::from_secs(120),
            "the whole file keeps its last good state"
        );
        assert!(Arc::ptr_eq(&first.jobs["b2"], &second.jobs["b2"]));
        assert!(
            second.errors[0]
                .message
                .contains("job \"b2\": schedule.every"),
            "{:?}",
            second.errors
        );
        // Without a previous set (start-up), a broken file has no jobs.
        assert_eq!(load_dir(dir.path(), None).jobs.len(), 1);
        std::fs::remove_file(&b).unwrap();
        let third = load_dir(dir.path(), Some(&second));
        assert_eq!(third.jobs.keys().collect::<Vec<_>>(), ["a"]);
        assert!(third.errors.is_empty());
    }

    #[test]
    fn a_duplicate_id_is_an_error_of_the_later_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), job("x", "1m")).unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            format!("{}{}", job("x", "2m"), job("y", "2m")),
        )
        .unwrap();
        let set = load_dir(dir.path(), None);
        assert_eq!(set.jobs.keys().collect::<Vec<_>>(), ["x"]);
        assert_eq!(every(&set, "x"), Duration::from_secs(60));
        assert_eq!(set.errors.len(), 1);
        let e = set.errors[0].to_string();
        assert!(
            e.contains("b.toml: job \"x\": already defined in") && e.contains("a.toml"),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_directory_is_reported_and_keeps_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), job("a", "1m")).unwrap();
        let first = load_dir(dir.path(), None);
        let gone = dir.path().join("missing");
        let set = load_dir(&gone, Some(&first));
        assert_eq!(set.jobs.len(), 1);
        assert_eq!(set.errors[0].file, gone);
        assert!(set.errors[0]
            .message
            .contains("cannot read the jobs directory"));
    }

    #[tokio::test]
    async fn the_watcher_publishes_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        std::fs::write(&a, job("a", "1m")).unwrap();
        let (mut rx, handle) = watch_dir(dir.path().to_path_buf(), Duration::from_millis(50));
        assert_eq!(every(&rx.borrow(), "a"), Duration::from_secs(60));
        std::fs::write(&a, job("a", "2m")).unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            every(&rx.borrow_and_update(), "a"),
            Duration::from_secs(120)
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
