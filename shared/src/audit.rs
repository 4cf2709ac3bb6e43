//! The audit of access keys, enrolled or not, for compliance (CIS AWS
//! Foundations: access keys rotated every 90 days or less, credentials
//! unused for 45 days or more disabled): one verdict per key, from its
//! status, age and last use, and whether rekey holds its user ([`holding`]:
//! an owning secret whose `rekey:managed` is a near miss of `true` is a
//! finding). Pure; `rekey audit` gathers the keys.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{AccessKey, KeyStatus, LastUsed};
use crate::records::Enrolment;

/// What a key is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRules {
    /// An active key older than this should have been rotated.
    pub max_age: Duration,
    /// An active key not used for this long (or never, since it was made)
    /// should be deactivated.
    pub max_unused: Duration,
}

impl Default for AuditRules {
    /// CIS AWS Foundations: 90 days, 45 days.
    fn default() -> Self {
        AuditRules {
            max_age: Duration::from_secs(90 * 86_400),
            max_unused: Duration::from_secs(45 * 86_400),
        }
    }
}

/// Something wrong with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Active and older than `max_age`.
    TooOld,
    /// Active and not used for `max_unused` (or never, and made that long
    /// ago).
    Unused,
    /// The user's owning secret carries `rekey:managed` with a value that
    /// is not exactly `true` (`True`, ` true`, `yes`, ...): it looks
    /// enrolled, but rekey passes it over and never rotates its keys.
    ManagedTagNearMiss,
}

/// How rekey holds a user whose owning secret ListSecrets lists as
/// `owning` (`None`: no owning secret listed): whether rekey manages it
/// (paused or not), and the finding each of its keys gets, if any.
pub fn holding(owning: Option<Enrolment>) -> (bool, Option<Finding>) {
    match owning {
        Some(Enrolment::Managed | Enrolment::Paused) => (true, None),
        Some(Enrolment::NearMiss) => (false, Some(Finding::ManagedTagNearMiss)),
        Some(Enrolment::NotManaged) | None => (false, None),
    }
}

/// The findings for `key`, last used `used`, at `now`. An inactive key
/// signs nothing: it has none. A key whose last use the provider cannot
/// tell is never `Unused`.
pub fn verdict(
    key: &AccessKey,
    used: &LastUsed,
    now: SystemTime,
    rules: &AuditRules,
) -> Vec<Finding> {
    if key.status != KeyStatus::Active {
        return Vec::new();
    }
    let older_than = |t: SystemTime, d: Duration| now.duration_since(t).is_ok_and(|age| age > d);
    let mut findings = Vec::new();
    if older_than(key.created, rules.max_age) {
        findings.push(Finding::TooOld);
    }
    let idle_since = match used {
        LastUsed::At { when, .. } => Some(*when),
        LastUsed::Never => Some(key.created),
        LastUsed::Unknown => None,
    };
    if idle_since.is_some_and(|t| older_than(t, rules.max_unused)) {
        findings.push(Finding::Unused);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn key(status: KeyStatus, age_days: u64, now: SystemTime) -> AccessKey {
        AccessKey {
            id: "AKIA1".into(),
            status,
            created: now - DAY * age_days as u32,
        }
    }

    #[test]
    fn an_old_or_idle_active_key_is_a_finding_and_an_inactive_one_never() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let rules = AuditRules::default();
        let used = |days: u32| LastUsed::At {
            when: now - DAY * days,
            service: Some("s3".into()),
        };
        let active = |age| key(KeyStatus::Active, age, now);
        assert_eq!(verdict(&active(10), &used(1), now, &rules), []);
        assert_eq!(
            verdict(&active(91), &used(1), now, &rules),
            [Finding::TooOld]
        );
        assert_eq!(
            verdict(&active(60), &used(46), now, &rules),
            [Finding::Unused]
        );
        assert_eq!(
            verdict(&active(100), &LastUsed::Never, now, &rules),
            [Finding::TooOld, Finding::Unused]
        );
        // A new key not used yet is no finding; SCloud cannot tell.
        assert_eq!(verdict(&active(3), &LastUsed::Never, now, &rules), []);
        assert_eq!(verdict(&active(60), &LastUsed::Unknown, now, &rules), []);
        let inactive = key(KeyStatus::Inactive, 400, now);
        assert_eq!(verdict(&inactive, &LastUsed::Never, now, &rules), []);
        // Exactly at the limit is still within it.
        assert_eq!(verdict(&active(90), &used(45), now, &rules), []);
    }

    #[test]
    fn a_user_whose_owning_secret_is_a_near_miss_is_not_managed_and_a_finding() {
        assert_eq!(holding(Some(Enrolment::Managed)), (true, None));
        assert_eq!(holding(Some(Enrolment::Paused)), (true, None));
        assert_eq!(
            holding(Some(Enrolment::NearMiss)),
            (false, Some(Finding::ManagedTagNearMiss))
        );
        assert_eq!(holding(Some(Enrolment::NotManaged)), (false, None));
        assert_eq!(holding(None), (false, None));
    }
}
