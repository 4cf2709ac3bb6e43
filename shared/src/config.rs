//! Settings from the environment, validated once at start.

use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Only IAM users whose path starts with this may be rotated.
    pub managed_user_path: String,
    /// How long a superseded (AWSPREVIOUS) key stays active.
    pub deactivate_after: Duration,
    /// How long an inactive key is kept before cleanup deletes it.
    pub delete_after: Duration,
    /// A superseded key used more recently than this is left active.
    pub idle_before_deactivate: Duration,
    /// Consecutive successful probes a new key needs.
    pub test_consecutive: u32,
    /// How long the hook's testSecret waits for a new key at most.
    pub test_timeout: Duration,
    /// Pause between probes of a new key.
    pub test_spacing: Duration,
}

pub const MANAGED_USER_PATH: &str = "REKEY_MANAGED_USER_PATH";
pub const DEACTIVATE_AFTER: &str = "REKEY_DEACTIVATE_AFTER";
pub const DELETE_AFTER: &str = "REKEY_DELETE_AFTER";
pub const IDLE_BEFORE_DEACTIVATE: &str = "REKEY_IDLE_BEFORE_DEACTIVATE";
pub const TEST_CONSECUTIVE: &str = "REKEY_TEST_CONSECUTIVE";
pub const TEST_TIMEOUT: &str = "REKEY_TEST_TIMEOUT";
pub const TEST_SPACING: &str = "REKEY_TEST_SPACING";

/// Every setting with its default (`None`: required).
pub const SETTINGS: [(&str, Option<&str>); 7] = [
    (MANAGED_USER_PATH, None),
    (DEACTIVATE_AFTER, Some("24h")),
    (DELETE_AFTER, Some("7d")),
    (IDLE_BEFORE_DEACTIVATE, Some("4h")),
    (TEST_CONSECUTIVE, Some("3")),
    (TEST_TIMEOUT, Some("60s")),
    (TEST_SPACING, Some("1s")),
];

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &'static str| -> Result<String> {
            let default = SETTINGS
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, d)| *d);
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                Some(v) => Ok(v.trim().to_owned()),
                None => default.map(str::to_owned).ok_or(Error::Config {
                    name,
                    reason: "is required".into(),
                }),
            }
        };
        let duration =
            |name: &'static str| -> Result<Duration> { parse_duration(name, &get(name)?) };

        let managed_user_path = get(MANAGED_USER_PATH)?;
        if !valid_iam_path(&managed_user_path) {
            return Err(Error::Config {
                name: MANAGED_USER_PATH,
                reason: format!(
                    "{managed_user_path:?} is not an IAM path: it must start and end with '/' (use '/' to allow every user)"
                ),
            });
        }
        let test_consecutive = get(TEST_CONSECUTIVE)?
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
            .ok_or(Error::Config {
                name: TEST_CONSECUTIVE,
                reason: "must be a whole number from 1 to 20".into(),
            })?;
        Ok(Config {
            managed_user_path,
            deactivate_after: duration(DEACTIVATE_AFTER)?,
            delete_after: duration(DELETE_AFTER)?,
            idle_before_deactivate: duration(IDLE_BEFORE_DEACTIVATE)?,
            test_consecutive,
            test_timeout: duration(TEST_TIMEOUT)?,
            test_spacing: duration(TEST_SPACING)?,
        })
    }
}

/// `0s`, `500ms`, `90m`, `24h`, `7d`: a number and a unit.
pub fn parse_duration(name: &'static str, text: &str) -> Result<Duration> {
    let invalid = || Error::Config {
        name,
        reason: format!(
            "{text:?} is not a duration: write a number and a unit, e.g. 0s, 90m, 24h, 7d"
        ),
    };
    // humantime accepts bare numbers nowhere and units everywhere; require a
    // leading digit so values like "h" or "-1h" are rejected clearly.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    humantime::parse_duration(text).map_err(|_| invalid())
}

fn valid_iam_path(p: &str) -> bool {
    p.starts_with('/')
        && p.ends_with('/')
        && p.len() <= 512
        && p.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[(MANAGED_USER_PATH, "/rekey/")]).unwrap();
        assert_eq!(c.deactivate_after, Duration::from_secs(24 * 3600));
        assert_eq!(c.delete_after, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.idle_before_deactivate, Duration::from_secs(4 * 3600));
        assert_eq!(c.test_consecutive, 3);
        assert_eq!(c.test_timeout, Duration::from_secs(60));
    }

    #[test]
    fn durations_with_units() {
        let c = config(&[
            (MANAGED_USER_PATH, "/"),
            (DEACTIVATE_AFTER, "0s"),
            (DELETE_AFTER, "90m"),
            (TEST_SPACING, "250ms"),
        ])
        .unwrap();
        assert_eq!(c.deactivate_after, Duration::ZERO);
        assert_eq!(c.delete_after, Duration::from_secs(90 * 60));
        assert_eq!(c.test_spacing, Duration::from_millis(250));
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], MANAGED_USER_PATH),
            (&[(MANAGED_USER_PATH, "rekey")], MANAGED_USER_PATH),
            (
                &[(MANAGED_USER_PATH, "/"), (DELETE_AFTER, "7")],
                DELETE_AFTER,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (DEACTIVATE_AFTER, "-1h")],
                DEACTIVATE_AFTER,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (TEST_TIMEOUT, "soon")],
                TEST_TIMEOUT,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (TEST_CONSECUTIVE, "0")],
                TEST_CONSECUTIVE,
            ),
        ];
        for (pairs, setting) in cases {
            let err = config(pairs).unwrap_err();
            assert!(
                err.to_string().contains(setting),
                "{pairs:?}: {err} should name {setting}"
            );
            assert_eq!(err.kind(), "InvalidConfig");
        }
    }
}
