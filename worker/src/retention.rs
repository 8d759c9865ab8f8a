//! Which backups a prune deletes (ARCHITECTURE.md §3): the policy selects backups to keep, every kept
//! backup keeps its ancestors, and the newest backup is always kept, so retention can never leave a
//! chain that cannot be restored nor delete every backup (OpenStack Freezer's W5).

use crate::timestamp::Timestamp;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

/// Retention options; a backup goes only if every given criterion lets it go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeepPolicy {
    /// Delete backups older than this many days (`--remove-older-than`).
    pub older_than_days: Option<f64>,
    /// Delete backups taken before this time (`--remove-from-date`).
    pub before: Option<Timestamp>,
    /// Keep the N newest (`--keep-last`).
    pub last: Option<u32>,
    /// Keep the newest backup of each of the last N hours with backups.
    pub hourly: Option<u32>,
    /// ... days.
    pub daily: Option<u32>,
    /// ... ISO weeks.
    pub weekly: Option<u32>,
    /// ... months.
    pub monthly: Option<u32>,
    /// ... years.
    pub yearly: Option<u32>,
}

impl KeepPolicy {
    /// Whether any criterion was given (a prune without one is refused).
    pub fn is_empty(&self) -> bool {
        self == &KeepPolicy::default()
    }

    fn has_keep_rules(&self) -> bool {
        self.last.is_some()
            || self.hourly.is_some()
            || self.daily.is_some()
            || self.weekly.is_some()
            || self.monthly.is_some()
            || self.yearly.is_some()
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Backup id.
    pub id: String,
    /// Parent id.
    pub parent: Option<String>,
    /// Backup time.
    pub time: Timestamp,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// The newest backup is always kept.
    Newest,
    /// Selected by the policy.
    Policy,
    /// A kept backup depends on it.
    Ancestor,
}

/// The decision: ids kept (with why) and ids deleted, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Kept ids and their reason.
    pub keep: Vec<(String, KeepReason)>,
    /// Deleted ids, newest first (children before parents).
    pub delete: Vec<String>,
}

fn bucket(t: Timestamp, unit: &str) -> i64 {
    let dt = OffsetDateTime::from_unix_timestamp(t.micros.div_euclid(1_000_000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (y, m, d, h) = (
        dt.year() as i64,
        dt.month() as i64,
        dt.day() as i64,
        dt.hour() as i64,
    );
    match unit {
        "hour" => ((y * 100 + m) * 100 + d) * 100 + h,
        "day" => (y * 100 + m) * 100 + d,
        "week" => {
            let (iy, iw, _) = dt.to_iso_week_date();
            iy as i64 * 100 + iw as i64
        }
        "month" => y * 100 + m,
        _ => y,
    }
}

/// Decides what a prune removes among the backups of one name, at time `now`.
pub fn decide(policy: &KeepPolicy, backups: &[Candidate], now: Timestamp) -> Decision {
    let mut order: Vec<&Candidate> = backups.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse(c.time));
    let mut keep: HashMap<&str, KeepReason> = HashMap::new();
    if let Some(newest) = order.first() {
        keep.insert(&newest.id, KeepReason::Newest);
    }

    // Policy keeps: the keep rules select, and the age criteria protect what is recent enough.
    let cutoff = match (policy.older_than_days, policy.before) {
        (Some(d), Some(b)) => Some(b.min(Timestamp {
            micros: now.micros - (d * 86_400_000_000.0) as i64,
        })),
        (Some(d), None) => Some(Timestamp {
            micros: now.micros - (d * 86_400_000_000.0) as i64,
        }),
        (None, b) => b,
    };
    let mut selected: HashSet<&str> = HashSet::new();
    if policy.has_keep_rules() {
        if let Some(n) = policy.last {
            for c in order.iter().take(n as usize) {
                selected.insert(&c.id);
            }
        }
        let rules = [
            (policy.hourly, "hour"),
            (policy.daily, "day"),
            (policy.weekly, "week"),
            (policy.monthly, "month"),
            (policy.yearly, "year"),
        ];
        for (count, unit) in rules {
            let Some(n) = count else { continue };
            let mut last_bucket = None;
            let mut kept = 0;
            for c in &order {
                if kept >= n {
                    break;
                }
                let b = bucket(c.time, unit);
                if last_bucket != Some(b) {
                    last_bucket = Some(b);
                    selected.insert(&c.id);
                    kept += 1;
                }
            }
        }
    }
    for c in &order {
        let recent = cutoff.is_some_and(|cut| c.time >= cut);
        let kept_by_rules = selected.contains(c.id.as_str());
        // Deleted only if every given criterion lets it go.
        let deletable =
            (cutoff.is_none() || !recent) && (!policy.has_keep_rules() || !kept_by_rules);
        if !deletable || policy.is_empty() {
            keep.entry(&c.id).or_insert(KeepReason::Policy);
        }
    }

    // Ancestors of kept backups stay.
    let by_id: HashMap<&str, &Candidate> = backups.iter().map(|c| (c.id.as_str(), c)).collect();
    let roots: Vec<&str> = keep.keys().copied().collect();
    for id in roots {
        let mut cur = by_id.get(id).and_then(|c| c.parent.as_deref());
        while let Some(p) = cur {
            keep.entry(p).or_insert(KeepReason::Ancestor);
            cur = by_id.get(p).and_then(|c| c.parent.as_deref());
        }
    }

    let mut d = Decision::default();
    for c in &order {
        match keep.get(c.id.as_str()) {
            Some(r) => d.keep.push((c.id.clone(), *r)),
            None => d.delete.push(c.id.clone()),
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    /// A chain per 3 backups: levels 0,1,2, one backup per day, oldest first.
    fn history(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: format!("b{i:02}"),
                parent: (i % 3 != 0).then(|| format!("b{:02}", i - 1)),
                time: Timestamp {
                    micros: i as i64 * DAY,
                },
            })
            .collect()
    }

    fn deleted(p: &KeepPolicy, h: &[Candidate], now_days: i64) -> Vec<String> {
        let mut d = decide(
            p,
            h,
            Timestamp {
                micros: now_days * DAY,
            },
        )
        .delete;
        d.sort();
        d
    }

    #[test]
    fn a_cutoff_after_everything_keeps_the_newest_chain() {
        let h = history(6);
        let p = KeepPolicy {
            older_than_days: Some(0.0),
            ..Default::default()
        };
        // b05 is newest; it needs b04 and b03.
        assert_eq!(deleted(&p, &h, 100), vec!["b00", "b01", "b02"]);
    }

    #[test]
    fn kept_backups_keep_their_ancestors() {
        let h = history(9);
        let p = KeepPolicy {
            older_than_days: Some(3.5),
            ..Default::default()
        };
        // now = day 9: b06..b08 are recent; b05 is older but b06.. is a new chain (b06 is level 0).
        assert_eq!(
            deleted(&p, &h, 9),
            vec!["b00", "b01", "b02", "b03", "b04", "b05"]
        );
        let p = KeepPolicy {
            older_than_days: Some(1.5),
            ..Default::default()
        };
        // b08 and b07 are recent; they need b06.
        assert_eq!(
            deleted(&p, &h, 9),
            vec!["b00", "b01", "b02", "b03", "b04", "b05"]
        );
        let p = KeepPolicy {
            older_than_days: Some(4.5),
            ..Default::default()
        };
        // b05 is recent, needs b04 and b03.
        assert_eq!(deleted(&p, &h, 9), vec!["b00", "b01", "b02"]);
    }

    #[test]
    fn keep_last_and_calendar_rules() {
        let h = history(9);
        let p = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        assert_eq!(
            deleted(&p, &h, 9),
            vec!["b00", "b01", "b02", "b03", "b04", "b05"]
        );
        let p = KeepPolicy {
            daily: Some(100),
            ..Default::default()
        };
        assert!(deleted(&p, &h, 9).is_empty());
        let p = KeepPolicy {
            weekly: Some(1),
            ..Default::default()
        };
        // One per ISO week: the newest backup only (all 9 days span at most 2 weeks: 1970-01-01 is a Thursday).
        let d = deleted(&p, &h, 9);
        assert!(!d.contains(&"b08".to_string()));
    }

    #[test]
    fn both_kinds_of_criteria_must_agree_to_delete() {
        let h = history(9);
        let p = KeepPolicy {
            last: Some(1),
            older_than_days: Some(4.5),
            ..Default::default()
        };
        // keep-last alone would delete b00..b05; the age criterion protects b05 (and its chain).
        assert_eq!(deleted(&p, &h, 9), vec!["b00", "b01", "b02"]);
    }

    #[test]
    fn remove_from_date_deletes_only_what_no_kept_backup_needs() {
        let h = history(6);
        let p = KeepPolicy {
            before: Some(Timestamp { micros: 5 * DAY }),
            ..Default::default()
        };
        assert_eq!(deleted(&p, &h, 9), vec!["b00", "b01", "b02"]);
    }

    #[test]
    fn children_are_deleted_before_parents() {
        let h = history(6);
        let p = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let d = decide(&p, &h, Timestamp { micros: 9 * DAY });
        assert_eq!(d.delete, vec!["b02", "b01", "b00"]);
    }
}
