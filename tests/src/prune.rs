//! Reading `prune --json` reports, and the retention decision a policy must produce (the newest
//! backup, what the policy protects, and every ancestor of a kept backup), for the prune tests.

use crate::parse_backup_id;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The report of `<host>_<name>` in `prune --json` output.
#[track_caller]
pub fn name_report<'a>(out: &'a Value, hn: &str) -> &'a Value {
    out["names"]
        .as_array()
        .unwrap_or_else(|| panic!("prune --json has no \"names\" array: {out}"))
        .iter()
        .find(|n| n["name"] == hn)
        .unwrap_or_else(|| panic!("prune --json has no report for {hn}: {out}"))
}

/// The `<host>_<name>`s that `prune --json` reports on.
pub fn names_in(out: &Value) -> BTreeSet<String> {
    out["names"]
        .as_array()
        .unwrap_or_else(|| panic!("prune --json has no \"names\" array: {out}"))
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

/// Deleted ids in report order.
pub fn deleted_ids(nr: &Value) -> Vec<String> {
    nr["deleted"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"deleted\" array: {nr}"))
        .iter()
        .map(|d| d["backup_id"].as_str().unwrap().to_string())
        .collect()
}

/// Kept ids with their reason.
pub fn kept_reasons(nr: &Value) -> BTreeMap<String, String> {
    nr["kept"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"kept\" array: {nr}"))
        .iter()
        .map(|k| {
            (
                k["backup_id"].as_str().unwrap().to_string(),
                k["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The debris paths a name's report says were removed.
pub fn debris_paths(nr: &Value) -> Vec<PathBuf> {
    nr["debris"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"debris\" array: {nr}"))
        .iter()
        .map(|d| PathBuf::from(d["path"].as_str().unwrap()))
        .collect()
}

/// A retention policy: its command-line options and what it means, for the expected decision.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The options to pass to `prune`.
    pub args: Vec<String>,
    /// The ids the age criteria (`--remove-older-than`, `--remove-from-date`) let go; `None` when
    /// neither is given.
    age_lets_go: Option<BTreeSet<String>>,
    /// `--keep-last`, `--keep-hourly`, ... as given.
    last: Option<usize>,
    hourly: Option<usize>,
    daily: Option<usize>,
    weekly: Option<usize>,
    monthly: Option<usize>,
    yearly: Option<usize>,
}

impl Policy {
    /// Adds `--keep-<opt> n` (`opt`: last, hourly, daily, weekly, monthly or yearly).
    pub fn keep(mut self, opt: &str, n: usize) -> Policy {
        self.args.push(format!("--keep-{opt}"));
        self.args.push(n.to_string());
        match opt {
            "last" => self.last = Some(n),
            "hourly" => self.hourly = Some(n),
            "daily" => self.daily = Some(n),
            "weekly" => self.weekly = Some(n),
            "monthly" => self.monthly = Some(n),
            "yearly" => self.yearly = Some(n),
            _ => unreachable!(),
        }
        self
    }

    /// An age criterion given as `args` that lets `ids` go (both criteria: the intersection).
    pub fn age(mut self, args: &[String], ids: BTreeSet<String>) -> Policy {
        self.args.extend(args.iter().cloned());
        self.age_lets_go = Some(match self.age_lets_go {
            Some(prev) => prev.intersection(&ids).cloned().collect(),
            None => ids,
        });
        self
    }
}

/// Calendar buckets (UTC) of a backup id, as restic's `forget` groups snapshots.
fn bucket(id: &str, unit: &str) -> String {
    match unit {
        "hour" => id[..11].to_string(),
        "day" => id[..8].to_string(),
        "week" => {
            // ISO weeks start on Monday; 1970-01-01 was a Thursday.
            let days = parse_backup_id(id).0.div_euclid(86_400);
            (days - (days + 3).rem_euclid(7)).to_string()
        }
        "month" => id[..6].to_string(),
        "year" => id[..4].to_string(),
        _ => unreachable!(),
    }
}

/// What prune must keep (with the reason it reports) among `backups` (id → parent id): the newest,
/// what the policy protects (a backup goes only if every criterion lets it go), and every ancestor of
/// a kept backup.
pub fn expected_keep(
    backups: &BTreeMap<String, Option<String>>,
    p: &Policy,
) -> BTreeMap<String, &'static str> {
    let newest_first: Vec<&String> = backups.keys().rev().collect();
    let mut keep = BTreeMap::new();
    if let Some(n) = newest_first.first() {
        keep.insert((*n).clone(), "newest");
    }
    let mut selected = BTreeSet::new();
    if let Some(n) = p.last {
        selected.extend(newest_first.iter().take(n).cloned());
    }
    for (count, unit) in [
        (p.hourly, "hour"),
        (p.daily, "day"),
        (p.weekly, "week"),
        (p.monthly, "month"),
        (p.yearly, "year"),
    ] {
        let Some(n) = count else { continue };
        let mut seen = BTreeSet::new();
        for id in &newest_first {
            if seen.len() >= n {
                break;
            }
            if seen.insert(bucket(id, unit)) {
                selected.insert(*id);
            }
        }
    }
    let has_rules = p.last.is_some()
        || p.hourly.is_some()
        || p.daily.is_some()
        || p.weekly.is_some()
        || p.monthly.is_some()
        || p.yearly.is_some();
    for id in &newest_first {
        let age_ok = p.age_lets_go.as_ref().is_none_or(|s| s.contains(*id));
        let rules_ok = !has_rules || !selected.contains(*id);
        if !(age_ok && rules_ok) {
            keep.entry((*id).clone()).or_insert("policy");
        }
    }
    let roots: Vec<String> = keep.keys().cloned().collect();
    for id in roots {
        let mut cur = backups.get(&id).cloned().flatten();
        while let Some(p) = cur {
            keep.entry(p.clone()).or_insert("ancestor");
            cur = backups.get(&p).cloned().flatten();
        }
    }
    keep
}

/// id → parent id of `list --json` rows.
pub fn parents_of(list: &[Value]) -> BTreeMap<String, Option<String>> {
    list.iter()
        .map(|b| {
            (
                b["backup_id"].as_str().unwrap().to_string(),
                b["parent_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Every listed backup's parent is listed too, and every listed backup is restorable.
#[track_caller]
pub fn assert_chains_whole(list: &[Value], ctx: &str) {
    let ids: BTreeSet<&str> = list
        .iter()
        .map(|b| b["backup_id"].as_str().unwrap())
        .collect();
    for b in list {
        if let Some(p) = b["parent_id"].as_str() {
            assert!(
                ids.contains(p),
                "{ctx}: backup {} survived without its parent {p}",
                b["backup_id"]
            );
        }
        assert_eq!(
            b["restorable"], true,
            "{ctx}: a surviving backup is not restorable: {b}"
        );
    }
}

/// Owned copies of `v`: arguments written as literals.
pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
