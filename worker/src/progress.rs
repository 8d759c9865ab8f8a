//! Run counters shared by the pipeline stages, a progress line on a terminal, and the one-line
//! summary printed at the end.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters updated by the engine while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries walked.
    pub entries: AtomicU64,
    /// Files whose content went into the archive.
    pub files_stored: AtomicU64,
    /// Bytes of file content read (backup) or written (restore).
    pub bytes_read: AtomicU64,
    /// Bytes of segments written to the storage (backup).
    pub bytes_stored: AtomicU64,
}

/// A progress line on stderr while the run lasts, when stderr is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing `counters` under `verb` (e.g. "backing up"), if stderr is a terminal.
    pub fn start(verb: &'static str, counters: Arc<Counters>, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let b = bar.clone();
        std::thread::spawn(move || {
            while !b.is_finished() {
                let bytes = counters.bytes_read.load(Ordering::Relaxed);
                b.set_message(format!(
                    "{verb}: {} entries, {} files, {}",
                    counters.entries.load(Ordering::Relaxed),
                    counters.files_stored.load(Ordering::Relaxed),
                    human_bytes(bytes)
                ));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Progress { bar: Some(bar) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(super::human_bytes(10), "10 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
