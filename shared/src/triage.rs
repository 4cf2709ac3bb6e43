//! The sweep's first look at a secret: what is due, decided from what
//! ListSecrets already returns (its tags, where rekey keeps its records,
//! and its version stages), with no further call. Pure.
//!
//! A secret is sent on (to rekey-cleanup's full check, and for the
//! pipeline to rekey-create) when its rotation or a retirement step is due
//! by the records, when a rotation is in progress, when the records cannot
//! say (no `rekey:current` record, or one for another version than
//! AWSCURRENT's: an edit rekey did not make), or when its last full check
//! is older than `REKEY_FULL_CHECK_EVERY` (so keys changed by hand are
//! noticed). Everything else costs nothing until the next sweep.
//!
//! Invariant liveness: every state the records cannot vouch for is sent on
//! to the functions that look at the keys themselves; a record only ever
//! makes a secret due sooner, never later, than the functions would.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{AWSCURRENT, AWSPENDING};
use crate::plan::{ended, is_due, PENDING_SETTLE};
use crate::ports::SecretInfo;
use crate::records::{self, checked_at, load_records, CurrentRecord, Enrolment};

/// The periods the sweep decides with.
#[derive(Clone, Copy, Debug)]
pub struct Periods {
    /// Rotate when AWSCURRENT's key is at least this old (the pipeline's
    /// period).
    pub rotation: Duration,
    /// `REKEY_DEACTIVATE_AFTER`.
    pub deactivate_after: Duration,
    /// `REKEY_DELETE_AFTER`.
    pub delete_after: Duration,
    /// `REKEY_FULL_CHECK_EVERY`.
    pub full_check_every: Duration,
}

/// Why the sweep sends a secret on, or passes it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Not tagged `rekey:managed` (ListSecrets' filter is by prefix), or
    /// tagged `false`.
    NotManaged,
    /// Tagged `rekey:managed` with a near miss of `true` (`True`, ` true`,
    /// `yes`, ...): not managed, passed over, and counted
    /// (`ManagedTagNearMiss`) and logged by the sweep.
    ManagedTagNearMiss,
    /// Tagged `rekey:paused`.
    Paused,
    /// No `rekey:current` record for the AWSCURRENT version.
    Unrecorded,
    /// AWSPENDING is on a version other than AWSCURRENT's.
    InProgress,
    /// AWSCURRENT's key is at least the rotation period old, by
    /// `rekey:current` (pipeline only).
    RotationDue,
    /// A superseded key's grace period or an inactive key's deletion
    /// period has ended, or a key rekey made is neither current nor
    /// retiring.
    RetirementDue,
    /// The last full check is `REKEY_FULL_CHECK_EVERY` old.
    CheckDue,
    /// Nothing is due.
    NothingDue,
}

/// What the sweep does with one secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Triage {
    /// Run the pipeline's rotation (rekey-create, which decides again).
    pub rotate: bool,
    /// Run rekey-cleanup's full check.
    pub clean: bool,
    /// Why.
    pub reason: Reason,
    /// Since when AWSCURRENT's key exists, where the records say
    /// (`rekey:current`).
    pub current_since: Option<SystemTime>,
}

impl Triage {
    fn pass(reason: Reason) -> Triage {
        Triage {
            rotate: false,
            clean: false,
            reason,
            current_since: None,
        }
    }

    /// Whether anything is due.
    pub fn is_due(&self) -> bool {
        self.rotate || self.clean
    }
}

/// What is due for the secret `info` describes (as ListSecrets lists it)
/// at `now`. The hook drives the rotation of a secret with rotation
/// enabled: the sweep only retires its keys.
pub fn triage(info: &SecretInfo, now: SystemTime, periods: &Periods) -> Triage {
    match records::enrolment(info) {
        Enrolment::Managed => {}
        Enrolment::NotManaged => return Triage::pass(Reason::NotManaged),
        Enrolment::NearMiss => return Triage::pass(Reason::ManagedTagNearMiss),
        Enrolment::Paused => return Triage::pass(Reason::Paused),
    }
    let pipeline = !info.rotation_enabled;
    let current_version = info.version_with(AWSCURRENT);
    // A record in the future (a clock set wrong, or a tag set by hand) is
    // not believed: it would put the next rotation off for ever.
    let Some(current) = CurrentRecord::load(info)
        .filter(|r| Some(&*r.version) == current_version && r.since <= now)
    else {
        return Triage {
            rotate: pipeline,
            clean: true,
            reason: Reason::Unrecorded,
            current_since: None,
        };
    };
    let due = |rotate, clean, reason| Triage {
        rotate,
        clean,
        reason,
        current_since: Some(current.since),
    };
    if info
        .version_with(AWSPENDING)
        .is_some_and(|v| Some(v) != current_version)
    {
        return due(pipeline, true, Reason::InProgress);
    }
    let rotate = pipeline && is_due(current.since, periods.rotation, now);
    if retirement_due(info, &current, now, periods) {
        due(rotate, true, Reason::RetirementDue)
    } else if rotate {
        due(true, false, Reason::RotationDue)
    } else if check_due(info, now, periods.full_check_every) {
        due(false, true, Reason::CheckDue)
    } else {
        due(false, false, Reason::NothingDue)
    }
}

/// Whether a retirement step is due by the records: a superseded key past
/// its grace period, an inactive one past its deletion period, or a key
/// rekey made that is neither current nor retiring (an abandoned
/// rotation's), once settled. The full check decides what to do.
fn retirement_due(
    info: &SecretInfo,
    current: &CurrentRecord,
    now: SystemTime,
    periods: &Periods,
) -> bool {
    let records = load_records(info);
    let deactivation_due = records
        .superseded
        .iter()
        .filter(|(key, _)| !records.inactive.contains_key(*key))
        .any(|(_, since)| ended(*since, periods.deactivate_after, now));
    let deletion_due = records
        .inactive
        .values()
        .any(|since| ended(*since, periods.delete_after, now));
    let stray = records.created.iter().any(|(key, made)| {
        *key != current.key_id
            && !records.superseded.contains_key(key)
            && !records.inactive.contains_key(key)
            && ended(*made, PENDING_SETTLE, now)
    });
    deactivation_due || deletion_due || stray
}

/// Whether the secret's last full check is old enough for another. Each
/// secret waits between half of `every` and `every`, by a hash of its ARN,
/// so that secrets enrolled together spread their checks over the days.
fn check_due(info: &SecretInfo, now: SystemTime, every: Duration) -> bool {
    let Some(checked) = checked_at(info).filter(|t| *t <= now) else {
        return true; // never checked, or a check "in the future"
    };
    ended(checked, check_interval(&info.arn, every), now)
}

/// Between `every / 2` (exclusive) and `every`, fixed for each ARN.
pub fn check_interval(arn: &str, every: Duration) -> Duration {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = arn.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let half = every / 2;
    let half_ms = half.as_millis().max(1) as u64;
    every - Duration::from_millis(hash % half_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::timestamp;
    use crate::records::{record_tag, CHECKED, CURRENT, INACTIVE, SUPERSEDED, TAG_MANAGED};
    use std::time::UNIX_EPOCH;

    const DAY: u64 = 86_400;

    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000 * DAY + days * DAY)
    }

    fn periods() -> Periods {
        Periods {
            rotation: Duration::from_secs(90 * DAY),
            deactivate_after: Duration::from_secs(DAY),
            delete_after: Duration::from_secs(7 * DAY),
            full_check_every: Duration::from_secs(7 * DAY),
        }
    }

    /// A managed pipeline secret rotated on day 0, checked on day 0.
    fn quiet() -> SecretInfo {
        let mut info = SecretInfo {
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/aws/u-AbCdEf".into(),
            ..Default::default()
        };
        info.versions.insert("v2".into(), vec![AWSCURRENT.into()]);
        info.versions
            .insert("v1".into(), vec!["AWSPREVIOUS".into()]);
        let tags = [
            (TAG_MANAGED.to_owned(), "true".to_owned()),
            (CURRENT.to_owned(), format!("v2 NEW {}", timestamp(at(0)))),
            (CHECKED.to_owned(), timestamp(at(0))),
            (record_tag(records::CREATED, "NEW"), timestamp(at(0))),
        ];
        info.tags.extend(tags);
        info
    }

    fn verdict(info: &SecretInfo, day: u64) -> (bool, bool, Reason) {
        let t = triage(info, at(day), &periods());
        (t.rotate, t.clean, t.reason)
    }

    #[test]
    fn a_quiet_secret_costs_nothing_until_its_check_or_rotation() {
        let info = quiet();
        assert_eq!(verdict(&info, 1), (false, false, Reason::NothingDue));
        assert_eq!(verdict(&info, 3), (false, false, Reason::NothingDue));
        assert_eq!(verdict(&info, 7), (false, true, Reason::CheckDue));
        assert_eq!(triage(&info, at(1), &periods()).current_since, Some(at(0)));
        let mut checked = info.clone();
        checked.tags.insert(CHECKED.into(), timestamp(at(89)));
        assert_eq!(verdict(&checked, 90), (true, false, Reason::RotationDue));
    }

    #[test]
    fn the_hook_rotates_its_own_secrets_the_sweep_only_retires() {
        let mut info = quiet();
        info.rotation_enabled = true;
        info.tags.insert(CHECKED.into(), timestamp(at(89)));
        assert_eq!(verdict(&info, 90), (false, false, Reason::NothingDue));
        info.tags.remove(CURRENT);
        assert_eq!(verdict(&info, 90), (false, true, Reason::Unrecorded));
    }

    #[test]
    fn what_the_records_cannot_vouch_for_is_checked_in_full() {
        let mut other_version = quiet();
        other_version
            .versions
            .insert("v3".into(), vec![AWSCURRENT.into()]);
        other_version.versions.insert("v2".into(), vec![]);
        assert_eq!(verdict(&other_version, 1), (true, true, Reason::Unrecorded));
        let mut garbled = quiet();
        garbled.tags.insert(CURRENT.into(), "v2".into());
        assert_eq!(verdict(&garbled, 1), (true, true, Reason::Unrecorded));
        let mut never_checked = quiet();
        never_checked.tags.remove(CHECKED);
        assert_eq!(verdict(&never_checked, 1), (false, true, Reason::CheckDue));
        // Times in the future are not believed.
        let mut ahead = quiet();
        ahead
            .tags
            .insert(CURRENT.into(), format!("v2 NEW {}", timestamp(at(400))));
        assert_eq!(verdict(&ahead, 1), (true, true, Reason::Unrecorded));
        let mut checked_ahead = quiet();
        checked_ahead
            .tags
            .insert(CHECKED.into(), timestamp(at(400)));
        assert_eq!(verdict(&checked_ahead, 1), (false, true, Reason::CheckDue));
    }

    #[test]
    fn an_edit_checked_in_full_keeps_the_rotation_on_schedule() {
        use crate::model::{AccessKey, KeyStatus};
        // On day 60 an edit makes v3 AWSCURRENT, holding the same key NEW
        // (made on day 0): the sweep cannot tell, so it checks in full.
        let mut info = quiet();
        info.versions.insert("v3".into(), vec![AWSCURRENT.into()]);
        info.versions
            .insert("v2".into(), vec!["AWSPREVIOUS".into()]);
        info.versions.remove("v1");
        assert_eq!(verdict(&info, 60), (true, true, Reason::Unrecorded));
        // The full check names v3 and keeps the key's time.
        let keys = [AccessKey {
            id: "NEW".into(),
            status: KeyStatus::Active,
            created: at(0),
        }];
        let recorded = CurrentRecord::load(&info);
        let checked = CurrentRecord::after_check(recorded.as_ref(), "v3", "NEW", &keys, at(60));
        assert_eq!(checked.since, at(0));
        info.tags.insert(CURRENT.into(), checked.value());
        info.tags.insert(CHECKED.into(), timestamp(at(60)));
        assert_eq!(verdict(&info, 61), (false, false, Reason::NothingDue));
        assert_eq!(verdict(&info, 90), (true, false, Reason::RotationDue));
    }

    #[test]
    fn a_rotation_in_progress_is_sent_on() {
        let mut info = quiet();
        info.versions.insert("v3".into(), vec![AWSPENDING.into()]);
        assert_eq!(verdict(&info, 1), (true, true, Reason::InProgress));
        // AWSPENDING on the current version is a finished rotation.
        let mut done = quiet();
        done.versions
            .insert("v2".into(), vec![AWSCURRENT.into(), AWSPENDING.into()]);
        assert_eq!(verdict(&done, 1), (false, false, Reason::NothingDue));
    }

    #[test]
    fn retirement_is_due_when_a_records_period_ends() {
        let mut info = quiet();
        info.tags
            .insert(record_tag(SUPERSEDED, "OLD"), timestamp(at(0)));
        assert_eq!(verdict(&info, 0), (false, false, Reason::NothingDue));
        assert_eq!(verdict(&info, 1), (false, true, Reason::RetirementDue));
        info.tags
            .insert(record_tag(INACTIVE, "OLD"), timestamp(at(1)));
        assert_eq!(verdict(&info, 2), (false, false, Reason::NothingDue));
        assert_eq!(verdict(&info, 8), (false, true, Reason::RetirementDue));
    }

    #[test]
    fn a_key_rekey_made_that_is_not_current_is_sent_on_once_settled() {
        let mut info = quiet();
        info.tags.insert(CHECKED.into(), timestamp(at(2)));
        info.tags
            .insert(record_tag(records::CREATED, "LOST"), timestamp(at(2)));
        let t = |secs| triage(&info, at(2) + Duration::from_secs(secs), &periods()).reason;
        assert_eq!(t(60), Reason::NothingDue);
        assert_eq!(t(PENDING_SETTLE.as_secs()), Reason::RetirementDue);
    }

    #[test]
    fn paused_and_unmanaged_secrets_are_passed_over() {
        let mut info = quiet();
        info.tags.insert(records::TAG_PAUSED.into(), "true".into());
        assert_eq!(verdict(&info, 400), (false, false, Reason::Paused));
        info.tags.insert(TAG_MANAGED.into(), "false".into());
        assert_eq!(verdict(&info, 400), (false, false, Reason::NotManaged));
    }

    #[test]
    fn a_near_miss_of_the_managed_tag_is_passed_over_and_told_apart() {
        for near in ["True", " true", "TRUE", "yes", "1"] {
            let mut info = quiet();
            info.tags.insert(TAG_MANAGED.into(), near.into());
            // Due by every record, and still not touched.
            assert_eq!(
                verdict(&info, 400),
                (false, false, Reason::ManagedTagNearMiss),
                "{near:?}"
            );
        }
    }

    #[test]
    fn checks_spread_between_half_the_interval_and_all_of_it() {
        let every = Duration::from_secs(7 * DAY);
        let intervals: Vec<Duration> = (0..1_000)
            .map(|i| check_interval(&format!("arn:secret:rekey/aws/user-{i}"), every))
            .collect();
        assert!(intervals.iter().all(|d| *d > every / 2 && *d <= every));
        let early = intervals.iter().filter(|d| **d < every * 3 / 4).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        assert_eq!(check_interval("x", every), check_interval("x", every));
    }
}
