//! Which level the next backup gets and which backup it is relative to (ARCHITECTURE.md §3).

use crate::manifest::Kind;
use crate::timestamp::Timestamp;

/// The user's level options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelPolicy {
    /// `--no-incremental`.
    pub no_incremental: bool,
    /// `--max-level N` (default 6 when no level option is given).
    pub max_level: Option<u32>,
    /// `--always-level N`.
    pub always_level: Option<u32>,
    /// `--restart-always-level DAYS`.
    pub restart_days: Option<f64>,
}

/// The default chain length when no level option is given: a daily job gets a weekly full.
pub const DEFAULT_MAX_LEVEL: u32 = 6;

/// What an existing backup looks like to the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    /// Its id.
    pub id: String,
    /// Its chain's id.
    pub chain: String,
    /// Its level.
    pub level: u32,
    /// Its time.
    pub time: Timestamp,
}

/// The decision for the next backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Its level.
    pub level: u32,
    /// The backup it is relative to (index into the given list).
    pub parent: Option<usize>,
    /// Full, incremental or differential.
    pub kind: Kind,
}

const FULL: Plan = Plan {
    level: 0,
    parent: None,
    kind: Kind::Full,
};

/// Plans the next backup given the existing ones of this name (any order).
pub fn plan(policy: &LevelPolicy, existing: &[Existing], now: Timestamp) -> Plan {
    if policy.no_incremental {
        return FULL;
    }
    let Some(newest) = existing.iter().max_by_key(|e| e.time) else {
        return FULL;
    };
    let mut chain: Vec<(usize, &Existing)> = existing
        .iter()
        .enumerate()
        .filter(|(_, e)| e.chain == newest.chain)
        .collect();
    chain.sort_by_key(|(_, e)| e.time);
    let Some(&(_, base)) = chain.iter().find(|(_, e)| e.level == 0) else {
        return FULL;
    };
    if let Some(days) = policy.restart_days {
        if base.time.age_days(now) >= days {
            return FULL;
        }
    }
    let &(top_idx, top) = chain.last().expect("the chain holds its newest backup");
    match policy.always_level {
        Some(0) => FULL,
        Some(n) if top.level < n => Plan {
            level: top.level + 1,
            parent: Some(top_idx),
            kind: Kind::Incremental,
        },
        Some(n) if top.level == n => {
            // Every further backup is level n against the newest level n-1.
            match chain.iter().rev().find(|(_, e)| e.level == n - 1) {
                Some(&(idx, _)) => Plan {
                    level: n,
                    parent: Some(idx),
                    kind: Kind::Differential,
                },
                None => FULL,
            }
        }
        Some(_) => FULL,
        None => {
            let max = policy.max_level.unwrap_or(DEFAULT_MAX_LEVEL);
            if top.level >= max {
                FULL
            } else {
                Plan {
                    level: top.level + 1,
                    parent: Some(top_idx),
                    kind: Kind::Incremental,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: LevelPolicy, n: usize) -> Vec<u32> {
        let mut existing: Vec<Existing> = Vec::new();
        let mut levels = Vec::new();
        for i in 0..n {
            let time = Timestamp {
                micros: i as i64 * 1000,
            };
            let p = plan(&policy, &existing, time);
            let chain = match p.parent {
                Some(idx) => existing[idx].chain.clone(),
                None => format!("c{i}"),
            };
            if let Some(idx) = p.parent {
                assert_eq!(existing[idx].level + 1, p.level);
            }
            existing.push(Existing {
                id: format!("b{i}"),
                chain,
                level: p.level,
                time,
            });
            levels.push(p.level);
        }
        levels
    }

    const NONE: LevelPolicy = LevelPolicy {
        no_incremental: false,
        max_level: None,
        always_level: None,
        restart_days: None,
    };

    #[test]
    fn max_level_rolls_over_into_a_new_chain() {
        let p = LevelPolicy {
            max_level: Some(2),
            ..NONE
        };
        assert_eq!(run(p, 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn default_is_a_weekly_full() {
        assert_eq!(run(NONE, 8), vec![0, 1, 2, 3, 4, 5, 6, 0]);
    }

    #[test]
    fn always_level_repeats_against_level_below() {
        let p = LevelPolicy {
            always_level: Some(1),
            ..NONE
        };
        assert_eq!(run(p, 5), vec![0, 1, 1, 1, 1]);
        let p = LevelPolicy {
            always_level: Some(2),
            ..NONE
        };
        assert_eq!(run(p, 5), vec![0, 1, 2, 2, 2]);
    }

    #[test]
    fn no_incremental_is_always_full() {
        let p = LevelPolicy {
            no_incremental: true,
            ..NONE
        };
        assert_eq!(run(p, 3), vec![0, 0, 0]);
    }

    #[test]
    fn restart_always_level_starts_a_new_chain_when_level0_is_old() {
        let p = LevelPolicy {
            always_level: Some(1),
            restart_days: Some(1.0),
            ..NONE
        };
        let day = 86_400_000_000i64;
        let existing = vec![
            Existing {
                id: "a".into(),
                chain: "a".into(),
                level: 0,
                time: Timestamp { micros: 0 },
            },
            Existing {
                id: "b".into(),
                chain: "a".into(),
                level: 1,
                time: Timestamp { micros: day / 2 },
            },
        ];
        assert_eq!(
            plan(
                &p,
                &existing,
                Timestamp {
                    micros: day / 2 + 1
                }
            )
            .level,
            1
        );
        assert_eq!(plan(&p, &existing, Timestamp { micros: day + 1 }).level, 0);
    }
}
