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
//! Nothing goes silent: a paused secret is passed over but reported
//! ([`Pause`]: since when, and whether for longer than
//! `REKEY_PAUSED_ALERT_AFTER`), and its `rekey:paused-since` record is
//! written when missing and removed once the pause is over
//! ([`PauseRecord`]).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{AWSCURRENT, AWSPENDING};
use crate::plan::{ended, is_due, PENDING_SETTLE};
use crate::ports::SecretInfo;
use crate::records::{
    self, checked_at, load_records, paused_since, CurrentRecord, Enrolment, TAG_PAUSED_SINCE,
};

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
    /// `REKEY_PAUSED_ALERT_AFTER`.
    pub paused_alert_after: Duration,
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
    /// A paused secret: since when, and whether for too long.
    pub pause: Option<Pause>,
    /// How the sweep changes the `rekey:paused-since` record, if at all.
    pub pause_record: Option<PauseRecord>,
}

/// A paused secret, as the sweep and `rekey status` report it (invariant
/// liveness: nothing goes silent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    /// Since when: its `rekey:paused-since` record, or `now` when it has
    /// none rekey can believe (none, not a time, or a time in the future,
    /// which would put the alarm off).
    pub since: SystemTime,
    /// The record is missing or not believed: `since` is now, and the
    /// sweep writes it.
    pub unrecorded: bool,
    /// Paused for `REKEY_PAUSED_ALERT_AFTER` or longer.
    pub too_long: bool,
}

/// A change of a secret's `rekey:paused-since` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseRecord {
    /// Write this time: the secret is paused and has no record rekey
    /// believes (a `rekey:paused` tag set by hand, seen for the first time).
    Write(SystemTime),
    /// Remove it: the secret is no longer paused (the tag was removed by
    /// hand), so a later pause starts a new clock.
    Remove,
}

/// The pause of the secret `info` describes at `now`, if it is paused
/// (managed and tagged `rekey:paused`), with `alert_after` its bound
/// (`REKEY_PAUSED_ALERT_AFTER`). A backdated record only makes the alarm
/// sooner (the safe side); one in the future is not believed.
pub fn pause(info: &SecretInfo, now: SystemTime, alert_after: Duration) -> Option<Pause> {
    if records::enrolment(info) != Enrolment::Paused {
        return None;
    }
    let recorded = paused_since(info).filter(|t| *t <= now);
    let since = recorded.unwrap_or(now);
    Some(Pause {
        since,
        unrecorded: recorded.is_none(),
        too_long: ended(since, alert_after, now),
    })
}

/// How the `rekey:paused-since` record of `info` must change, given its
/// [`pause`]: written for a paused secret without a believable one,
/// removed from a managed secret that is no longer paused. Nothing for a
/// secret rekey does not manage (it may not tag it).
pub fn pause_record(info: &SecretInfo, pause: Option<&Pause>) -> Option<PauseRecord> {
    match pause {
        Some(p) if p.unrecorded => Some(PauseRecord::Write(p.since)),
        Some(_) => None,
        None => (records::enrolment(info) == Enrolment::Managed
            && info.tags.contains_key(TAG_PAUSED_SINCE))
        .then_some(PauseRecord::Remove),
    }
}

impl Triage {
    fn pass(reason: Reason) -> Triage {
        Triage {
            rotate: false,
            clean: false,
            reason,
            current_since: None,
            pause: None,
            pause_record: None,
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
    let pause = pause(info, now, periods.paused_alert_after);
    let verdict = match records::enrolment(info) {
        Enrolment::Managed => due(info, now, periods),
        Enrolment::NotManaged => Triage::pass(Reason::NotManaged),
        Enrolment::NearMiss => Triage::pass(Reason::ManagedTagNearMiss),
        Enrolment::Paused => Triage::pass(Reason::Paused),
    };
    Triage {
        pause_record: pause_record(info, pause.as_ref()),
        pause,
        ..verdict
    }
}

/// What is due for a managed secret that is not paused.
fn due(info: &SecretInfo, now: SystemTime, periods: &Periods) -> Triage {
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
            ..Triage::pass(Reason::Unrecorded)
        };
    };
    let due = |rotate, clean, reason| Triage {
        rotate,
        clean,
        current_since: Some(current.since),
        ..Triage::pass(reason)
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
            paused_alert_after: Duration::from_secs(7 * DAY),
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
    fn a_paused_secret_is_reported_since_its_record_and_alarmed_past_the_bound() {
        let mut info = quiet();
        info.tags.insert(records::TAG_PAUSED.into(), "true".into());
        // Paused by hand, first seen on day 3: since then, to be recorded.
        let t = triage(&info, at(3), &periods());
        assert_eq!(
            (t.rotate, t.clean, t.reason),
            (false, false, Reason::Paused)
        );
        let first = Pause {
            since: at(3),
            unrecorded: true,
            too_long: false,
        };
        assert_eq!(t.pause, Some(first));
        assert_eq!(t.pause_record, Some(PauseRecord::Write(at(3))));
        // Recorded: counted from the record, alarmed from the bound on.
        info.tags.insert(TAG_PAUSED_SINCE.into(), timestamp(at(3)));
        let seen = |info: &SecretInfo, day| triage(info, at(day), &periods());
        assert_eq!(seen(&info, 9).pause.map(|p| p.too_long), Some(false));
        assert_eq!(seen(&info, 9).pause_record, None);
        assert_eq!(
            seen(&info, 10).pause,
            Some(Pause {
                since: at(3),
                unrecorded: false,
                too_long: true
            })
        );
        // A record in the future, or garbled, is not believed: from now.
        for bad in [timestamp(at(400)), "last week".to_owned()] {
            info.tags.insert(TAG_PAUSED_SINCE.into(), bad.clone());
            assert_eq!(
                seen(&info, 20).pause_record,
                Some(PauseRecord::Write(at(20))),
                "{bad}"
            );
            assert_eq!(seen(&info, 20).pause.map(|p| p.too_long), Some(false));
        }
        // A backdated one only alarms sooner.
        info.tags.insert(TAG_PAUSED_SINCE.into(), timestamp(at(0)));
        assert!(seen(&info, 7).pause.unwrap().too_long);
    }

    #[test]
    fn the_record_of_a_pause_that_is_over_is_removed() {
        let mut info = quiet();
        info.tags.insert(TAG_PAUSED_SINCE.into(), timestamp(at(0)));
        let t = triage(&info, at(1), &periods());
        assert_eq!(t.pause, None);
        assert_eq!(t.pause_record, Some(PauseRecord::Remove));
        assert_eq!(t.reason, Reason::NothingDue, "the rest as before");
        // Not rekey's to tag: left alone.
        info.tags.insert(TAG_MANAGED.into(), "True".into());
        assert_eq!(triage(&info, at(1), &periods()).pause_record, None);
        info.tags.insert(TAG_MANAGED.into(), "false".into());
        info.tags.insert(records::TAG_PAUSED.into(), "true".into());
        let t = triage(&info, at(1), &periods());
        assert_eq!((t.pause, t.pause_record), (None, None));
        // Paused, not managed: no pause to report (the near miss is).
        assert_eq!(pause(&info, at(1), Duration::from_secs(1)), None);
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
