//! rekey's records: the tags it reads and writes on a managed secret.
//!
//! - `rekey:managed` = `true` makes a secret rekey's: exactly `true`,
//!   lower case, nothing around it, as the template's IAM conditions
//!   (`StringEquals`) and ListSecrets (case-sensitive) read it. Any other
//!   value but `false` is a near miss ([`ManagedTag::NearMiss`]): not
//!   managed, and reported. `rekey:paused` = `true` (any case, spaces
//!   ignored: in doubt, rekey keeps away) pauses it (invariant
//!   managed-users-only). `rekey:paused-since` = `<time>`: since when
//!   (written by `rekey pause` and `rekey rollback`, or by the sweep or a
//!   full check that finds a paused secret without it; removed by `rekey
//!   resume`, or by the sweep once the secret is no longer paused), so a
//!   pause is counted and, past `REKEY_PAUSED_ALERT_AFTER`, alarmed
//!   (invariant liveness: nothing goes silent).
//! - One tag per key and fact, its value an RFC 3339 time:
//!   `rekey:created:<key id>` (rekey made the key for this secret; its
//!   value also names the rotation's token: `<time> <token>`),
//!   `rekey:superseded:<key id>` (this secret superseded the key) and
//!   `rekey:inactive:<key id>` (since when it is inactive). Kept in the
//!   secret so they survive crashes; a missing timer record starts its
//!   clock now.
//! - `rekey:current` = `<version id> <key id> <time>`: the version finish
//!   promoted, its key, and since when that key exists (written by finish,
//!   repaired by a full check, which keeps the time while the key is the
//!   same: [`CurrentRecord::after_check`]); `rekey:checked` = `<time>`:
//!   the last full check. The sweep decides from these and the version
//!   stages alone ([`crate::triage`]).
//!
//! Invariant retire-by-record: a key is retired by these records, and a
//! record is never trusted too early ([`trusted_since`],
//! [`CREATED_RECORD_WINDOW`]). The clocks (a grace period, a rotation
//! period) are anchored on the key, never on the latest version
//! ([`key_since`]): an edit that leaves the key unchanged moves none.
//! Pure; the steps read and write the tags.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::model::AccessKey;
use crate::plan::PENDING_SETTLE;
use crate::ports::SecretInfo;

/// A secret is managed by rekey when it carries this tag with value
/// exactly [`MANAGED_VALUE`].
pub const TAG_MANAGED: &str = "rekey:managed";
/// The one value of [`TAG_MANAGED`] that makes a secret managed.
pub const MANAGED_VALUE: &str = "true";
/// The value of [`TAG_MANAGED`] that says plainly "not managed" (no near
/// miss).
pub const UNMANAGED_VALUE: &str = "false";
/// `rekey:paused` = `true` pauses a managed secret.
pub const TAG_PAUSED: &str = "rekey:paused";
/// The record of since when a secret is paused: `<time>`.
pub const TAG_PAUSED_SINCE: &str = "rekey:paused-since";
/// The prefix of a `created` record: `rekey:created:<key id>`.
pub const CREATED: &str = "rekey:created:";
/// The prefix of a `superseded` record: `rekey:superseded:<key id>`.
pub const SUPERSEDED: &str = "rekey:superseded:";
/// The prefix of an `inactive` record: `rekey:inactive:<key id>`.
pub const INACTIVE: &str = "rekey:inactive:";
/// The record of the version finish promoted: `<version> <key> <time>`.
pub const CURRENT: &str = "rekey:current";
/// The record of the last full check of a secret: `<time>`.
pub const CHECKED: &str = "rekey:checked";
/// Every record a key may have.
pub const ALL: [&str; 3] = [CREATED, SUPERSEDED, INACTIVE];
/// The timer records, which start a grace or deletion period.
pub const TIMERS: [&str; 2] = [SUPERSEDED, INACTIVE];

/// What a secret's `rekey:managed` tag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedTag {
    /// Exactly `true`: managed.
    Managed,
    /// No such tag, or exactly `false`: not managed, and nothing to say.
    Absent,
    /// Any other value (`True`, ` true`, `yes`, `1`, ...): not managed,
    /// though it looks meant to be. Reported (the sweep's
    /// `ManagedTagNearMiss`, `rekey status`, `rekey audit`), never read as
    /// managed: the IAM conditions and ListSecrets would not.
    NearMiss,
}

/// The reading of a `rekey:managed` tag's value (`None`: no such tag).
/// Exact and case-sensitive, with no trimming: the same reading as the
/// template's IAM conditions (`StringEquals "true"`).
pub fn managed_tag(value: Option<&str>) -> ManagedTag {
    match value {
        Some(MANAGED_VALUE) => ManagedTag::Managed,
        None | Some(UNMANAGED_VALUE) => ManagedTag::Absent,
        Some(_) => ManagedTag::NearMiss,
    }
}

/// Whether the secret is tagged `rekey:managed` = `true`, exactly.
pub fn is_managed(info: &SecretInfo) -> bool {
    managed_tag(info.tags.get(TAG_MANAGED).map(String::as_str)) == ManagedTag::Managed
}

/// The reading of a `rekey:paused` tag's value (`None`: no such tag):
/// `true` in any case, spaces ignored. Looser than `rekey:managed` on
/// purpose: a near miss of it keeps rekey away, the safe side, and no IAM
/// condition or filter reads it.
pub fn paused_tag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether a secret is rekey's to work on, by its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrolment {
    /// Tagged `rekey:managed` = `true`, not paused.
    Managed,
    /// Not tagged `rekey:managed`, or tagged `false`.
    NotManaged,
    /// Tagged `rekey:managed` with a value that is neither `true` nor
    /// `false` ([`ManagedTag::NearMiss`]): not managed, and reported.
    NearMiss,
    /// Managed, and tagged `rekey:paused` = `true`.
    Paused,
}

impl Enrolment {
    /// Whether an operator is shown the secret (`rekey status` with no
    /// name): every secret rekey manages, paused or not, and every near
    /// miss, which rekey passes over and reports.
    pub fn is_shown(self) -> bool {
        self != Enrolment::NotManaged
    }
}

/// What the secret's tags say about rekey working on it.
pub fn enrolment(info: &SecretInfo) -> Enrolment {
    match managed_tag(info.tags.get(TAG_MANAGED).map(String::as_str)) {
        ManagedTag::Absent => Enrolment::NotManaged,
        ManagedTag::NearMiss => Enrolment::NearMiss,
        ManagedTag::Managed if paused_tag(info.tags.get(TAG_PAUSED).map(String::as_str)) => {
            Enrolment::Paused
        }
        ManagedTag::Managed => Enrolment::Managed,
    }
}

/// The error for a secret rekey does not manage, by its enrolment: a near
/// miss says which value to set.
pub fn not_managed(secret_id: &str, enrolment: Enrolment) -> crate::error::Error {
    crate::error::Error::SecretNotManaged {
        secret_id: secret_id.to_owned(),
        near_miss: enrolment == Enrolment::NearMiss,
    }
}

/// The value of a `created` record: when, and for which token.
pub fn created_value(when: SystemTime, token: &str) -> String {
    format!("{} {token}", crate::plan::timestamp(when))
}

/// The tag of the record `prefix` (one of [`CREATED`], [`SUPERSEDED`],
/// [`INACTIVE`]) for `key_id`.
pub fn record_tag(prefix: &str, key_id: &str) -> String {
    format!("{prefix}{key_id}")
}

/// The records in a secret's tags; a tag whose value is not an RFC 3339
/// time is ignored.
pub fn load_records(info: &SecretInfo) -> Records {
    let mut records = Records::default();
    for (tag, value) in &info.tags {
        // A `created` record also names the token the key was made for.
        let (time, token) = value.split_once(' ').unwrap_or((value, ""));
        let Ok(when) = humantime::parse_rfc3339(time) else {
            continue;
        };
        if let Some(id) = tag.strip_prefix(CREATED) {
            records.created.insert(id.to_owned(), when);
            if !token.is_empty() {
                records.created_for.insert(id.to_owned(), token.to_owned());
            }
        } else if let Some(id) = tag.strip_prefix(SUPERSEDED) {
            records.superseded.insert(id.to_owned(), when);
        } else if let Some(id) = tag.strip_prefix(INACTIVE) {
            records.inactive.insert(id.to_owned(), when);
        }
    }
    records
}

/// The `rekey:current` record: which version is AWSCURRENT, holding
/// which key, and since when that key exists (the sweep counts the
/// rotation period from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentRecord {
    /// The version finish promoted (or a full check found AWSCURRENT).
    pub version: String,
    /// The key that version holds.
    pub key_id: String,
    /// Since when that key exists: finish writes its version's creation
    /// (moments after the key's), a full check the key's own creation
    /// ([`CurrentRecord::after_check`]).
    pub since: SystemTime,
}

impl CurrentRecord {
    /// The record's tag value.
    pub fn value(&self) -> String {
        format!(
            "{} {} {}",
            self.version,
            self.key_id,
            crate::plan::timestamp(self.since)
        )
    }

    /// The record a full check leaves for AWSCURRENT's `version`, holding
    /// `key_id`, given the user's `keys` as the provider lists them and the
    /// version's creation: since [`key_since`] (an edit that keeps the key
    /// keeps the time, so the sweep's due-ness does not restart). Where
    /// the provider does not list the key, the time `recorded` when it
    /// names the same key (never later than the version's creation), else
    /// the version's creation. Invariant liveness: the time is never later
    /// than the functions' own (`rekey-create` decides from
    /// [`key_since`]), so the record makes a rotation due no later than
    /// they would.
    pub fn after_check(
        recorded: Option<&CurrentRecord>,
        version: &str,
        key_id: &str,
        keys: &[AccessKey],
        version_created: SystemTime,
    ) -> CurrentRecord {
        let since = match (created_of(keys, Some(key_id)), recorded) {
            (Some(_), _) => key_since(keys, Some(key_id), version_created),
            (None, Some(r)) if r.key_id == key_id => r.since.min(version_created),
            (None, _) => version_created,
        };
        CurrentRecord {
            version: version.to_owned(),
            key_id: key_id.to_owned(),
            since,
        }
    }

    /// The record in the secret's tags, if it is well-formed.
    pub fn load(info: &SecretInfo) -> Option<CurrentRecord> {
        let mut parts = info.tags.get(CURRENT)?.split(' ');
        let (version, key_id, since) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version.is_empty() || key_id.is_empty() {
            return None;
        }
        Some(CurrentRecord {
            version: version.to_owned(),
            key_id: key_id.to_owned(),
            since: humantime::parse_rfc3339(since).ok()?,
        })
    }
}

/// The `rekey:paused-since` record, if it is an RFC 3339 time (believed or
/// not: [`crate::triage::pause`] decides).
pub fn paused_since(info: &SecretInfo) -> Option<SystemTime> {
    humantime::parse_rfc3339(info.tags.get(TAG_PAUSED_SINCE)?.trim()).ok()
}

/// The `rekey:checked` record: when the secret was last checked in full.
pub fn checked_at(info: &SecretInfo) -> Option<SystemTime> {
    humantime::parse_rfc3339(info.tags.get(CHECKED)?).ok()
}

/// When rekey made, superseded or saw inactive each key. Kept outside the
/// function (in the secret's tags) so it survives crashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// Keys rekey created for this secret (`rekey:created:<id>`), so that a
    /// key that never became current (an abandoned rotation) or left the
    /// labels (a rollback, an edit) is still known to be rekey's to retire.
    pub created: BTreeMap<String, SystemTime>,
    /// The token each key in `created` was made for, where the record
    /// says (`rekey:created:<id>` = `<time> <token>`).
    pub created_for: BTreeMap<String, String>,
    /// Keys this secret superseded (`rekey:superseded:<id>`): their grace
    /// period runs from then.
    pub superseded: BTreeMap<String, SystemTime>,
    /// Keys seen inactive (`rekey:inactive:<id>`): their deletion period
    /// runs from then.
    pub inactive: BTreeMap<String, SystemTime>,
}

/// How long after a key's creation rekey writes its `created` record at
/// most (create records a key right after making it). A record outside
/// this window was not written by rekey for that key, and a tag is no
/// proof (anyone who may tag the secret can write one).
pub const CREATED_RECORD_WINDOW: Duration = Duration::from_secs(10 * 60);

impl Records {
    /// Whether rekey recorded that it made `key` for this secret: a
    /// `created` record written within `CREATED_RECORD_WINDOW` of the
    /// key's creation, which the provider reports and no tag can change.
    pub fn made_by_rekey(&self, key: &AccessKey) -> bool {
        // The record's time is rekey's clock (the function's), the key's
        // the provider's: the window absorbs the skew between them and the
        // time between the call and the record, and a key dated to the
        // second may look up to a second later than its record.
        self.created.get(&key.id).is_some_and(|t| {
            let made = key.created - Duration::from_secs(1);
            *t >= made && *t <= key.created + CREATED_RECORD_WINDOW
        })
    }

    /// Whether `key` is rekey's to retire once it is neither current nor
    /// pending: recorded superseded, or made by rekey (an abandoned
    /// rotation's key, one rolled back from, one never stored) and settled
    /// (a key just made may be between its record and its store).
    pub fn retirable(&self, key: &AccessKey, now: SystemTime) -> bool {
        // The provider's creation time against rekey's clock: a key that
        // looks younger than it is (a provider clock ahead) only waits
        // longer.
        self.superseded.contains_key(&key.id)
            || (self.made_by_rekey(key) && key.created + PENDING_SETTLE <= now)
    }
}

/// When a period started: the record, never earlier than `floor` (a
/// record is a tag anyone who may tag the secret can write; invariant
/// retire-by-record). The floor is [`key_since`] of the AWSCURRENT key.
pub fn trusted_since(record: SystemTime, floor: SystemTime) -> SystemTime {
    record.max(floor)
}

/// Since when the key AWSCURRENT holds (`key_id`) exists: the anchor of
/// rekey's clocks (invariant retire-by-record, "The clocks" in
/// ARCHITECTURE.md). It is the key's creation as the provider reports it
/// in `keys`, which no tag and no edit can move: an edit that leaves the
/// key unchanged leaves it unchanged.
///
/// - The rotation period counts from it (`rekey-create`, and through
///   `rekey:current` the sweep): a rotation is due when the *key* is that
///   old, however often the secret was edited since.
/// - It is the floor of every timer record ([`trusted_since`]): rekey
///   writes a `superseded` record only once the key that supersedes is
///   made (finish after create; cleanup at the time it runs), so a
///   record dated earlier than the current key's creation was not written
///   by rekey for this supersession.
///
/// Never later than the AWSCURRENT version's creation (`version_created`):
/// no version holds a key before the key exists, so a provider clock ahead
/// of Secrets Manager's is not believed. Where the provider does not list
/// the key (deleted by hand, or too new to be listed), the version's
/// creation.
pub fn key_since(
    keys: &[AccessKey],
    key_id: Option<&str>,
    version_created: SystemTime,
) -> SystemTime {
    created_of(keys, key_id).map_or(version_created, |made| made.min(version_created))
}

/// The provider's creation time of `key_id`, if `keys` lists it.
fn created_of(keys: &[AccessKey], key_id: Option<&str>) -> Option<SystemTime> {
    let id = key_id?;
    keys.iter().find(|k| k.id == id).map(|k| k.created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyStatus;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_created_record_counts_only_near_the_keys_creation() {
        // A record written by hand for an operator's key long after it was
        // made does not make it rekey's to retire.
        let hand = AccessKey {
            id: "HAND".into(),
            status: KeyStatus::Active,
            created: at(20),
        };
        let mut rec = Records::default();
        rec.created.insert("HAND".into(), at(5_000));
        assert!(!rec.made_by_rekey(&hand));
        rec.created.insert("HAND".into(), at(21));
        assert!(rec.made_by_rekey(&hand));
        rec.created.insert("HAND".into(), at(1));
        assert!(!rec.made_by_rekey(&hand));
    }

    fn key(id: &str, created: u64) -> AccessKey {
        AccessKey {
            id: id.into(),
            status: KeyStatus::Active,
            created: at(created),
        }
    }

    #[test]
    fn the_clocks_count_from_the_key_not_from_the_latest_version() {
        let keys = [key("CUR", 100), key("OLD", 10)];
        // Edits made a new AWSCURRENT version long after the key: the
        // key's creation all the same.
        assert_eq!(key_since(&keys, Some("CUR"), at(5_000)), at(100));
        assert_eq!(key_since(&keys, Some("CUR"), at(9_000)), at(100));
        // No version holds a key before the key exists: a provider clock
        // ahead of Secrets Manager's is not believed.
        assert_eq!(key_since(&keys, Some("CUR"), at(90)), at(90));
        // A key the provider does not list: the version's creation.
        assert_eq!(key_since(&keys, Some("GONE"), at(5_000)), at(5_000));
        assert_eq!(key_since(&keys, None, at(5_000)), at(5_000));
    }

    #[test]
    fn a_backdated_record_is_trusted_from_the_current_keys_creation_at_the_earliest() {
        let keys = [key("CUR", 100), key("OLD", 10)];
        // A record set by hand to long ago, then an edit: trusted from
        // the creation of the key that superseded it, not from the edit
        // (which would restart the grace period) nor from the record.
        let floor = key_since(&keys, Some("CUR"), at(5_000));
        assert_eq!(trusted_since(at(1), floor), at(100));
        assert_eq!(trusted_since(at(150), floor), at(150));
    }

    #[test]
    fn a_full_check_keeps_the_current_records_time_while_the_key_is_the_same() {
        let keys = [key("CUR", 100)];
        let finished = CurrentRecord {
            version: "v1".into(),
            key_id: "CUR".into(),
            since: at(103),
        };
        // An edit (version v2) keeps the key: the time is the key's
        // creation, not v2's.
        let after = CurrentRecord::after_check(Some(&finished), "v2", "CUR", &keys, at(5_000));
        assert_eq!(
            after,
            CurrentRecord {
                version: "v2".into(),
                key_id: "CUR".into(),
                since: at(100),
            }
        );
        let again = CurrentRecord::after_check(Some(&after), "v3", "CUR", &keys, at(9_000));
        assert_eq!((again.version.as_str(), again.since), ("v3", at(100)));
        // A time set by hand later than the key's creation would put the
        // rotation off: it is not kept.
        let forged = CurrentRecord {
            since: at(8_000),
            ..after.clone()
        };
        let fixed = CurrentRecord::after_check(Some(&forged), "v3", "CUR", &keys, at(9_000));
        assert_eq!(fixed.since, at(100));
        // The provider does not list the key: the recorded time of the
        // same key, never later than the version's creation.
        let unlisted = |r: &CurrentRecord, key: &str, made: u64| {
            CurrentRecord::after_check(Some(r), "v3", key, &[], at(made)).since
        };
        assert_eq!(unlisted(&after, "CUR", 9_000), at(100));
        assert_eq!(unlisted(&forged, "CUR", 7_000), at(7_000));
        // Another key: the version's creation.
        assert_eq!(unlisted(&after, "NEW", 9_000), at(9_000));
        let none = CurrentRecord::after_check(None, "v3", "NEW", &[], at(9_000));
        assert_eq!(none.since, at(9_000));
    }

    #[test]
    fn the_current_record_reads_back_and_refuses_what_it_did_not_write() {
        let record = CurrentRecord {
            version: "v-1".into(),
            key_id: "AKIA1".into(),
            since: at(1_000),
        };
        let mut info = SecretInfo::default();
        info.tags.insert(CURRENT.into(), record.value());
        assert_eq!(CurrentRecord::load(&info), Some(record));
        for bad in [
            "",
            "v-1",
            "v-1 AKIA1",
            "v-1 AKIA1 yesterday",
            "v-1 AKIA1 1970-01-01T00:16:40Z x",
        ] {
            info.tags.insert(CURRENT.into(), bad.into());
            assert_eq!(CurrentRecord::load(&info), None, "{bad:?}");
        }
        info.tags
            .insert(CHECKED.into(), "1970-01-01T00:16:40Z".into());
        assert_eq!(checked_at(&info), Some(at(1_000)));
    }

    #[test]
    fn records_are_read_from_tags() {
        let mut info = SecretInfo::default();
        let t = "2026-01-01T00:00:00Z";
        for (tag, value) in [
            (record_tag(CREATED, "A"), t),
            (record_tag(SUPERSEDED, "B"), t),
            (record_tag(INACTIVE, "C"), t),
            (record_tag(INACTIVE, "D"), "not a time"),
            (TAG_MANAGED.to_owned(), "true"),
        ] {
            info.tags.insert(tag, value.to_owned());
        }
        info.tags
            .insert(record_tag(CREATED, "E"), format!("{t} tok-1"));
        let records = load_records(&info);
        let when = humantime::parse_rfc3339(t).unwrap();
        assert_eq!(
            records.created,
            [("A".to_owned(), when), ("E".to_owned(), when)].into()
        );
        assert_eq!(
            records.created_for,
            [("E".to_owned(), "tok-1".to_owned())].into()
        );
        assert_eq!(records.superseded, [("B".to_owned(), when)].into());
        assert_eq!(records.inactive, [("C".to_owned(), when)].into());
        assert_eq!(enrolment(&info), Enrolment::Managed);
        info.tags.insert(TAG_PAUSED.into(), "TRUE".into());
        assert_eq!(enrolment(&info), Enrolment::Paused);
        info.tags.remove(TAG_MANAGED);
        assert_eq!(enrolment(&info), Enrolment::NotManaged);
    }

    #[test]
    fn managed_is_exactly_true_and_anything_close_is_a_near_miss() {
        assert_eq!(managed_tag(Some("true")), ManagedTag::Managed);
        for absent in [None, Some("false")] {
            assert_eq!(managed_tag(absent), ManagedTag::Absent, "{absent:?}");
        }
        for near in [
            "True", "TRUE", " true", "true ", "\ttrue", "yes", "1", "on", "", "t", "trueish",
            "False", " false",
        ] {
            assert_eq!(managed_tag(Some(near)), ManagedTag::NearMiss, "{near:?}");
        }
        let tagged = |managed: Option<&str>, paused: Option<&str>| {
            let mut info = SecretInfo::default();
            if let Some(v) = managed {
                info.tags.insert(TAG_MANAGED.into(), v.into());
            }
            if let Some(v) = paused {
                info.tags.insert(TAG_PAUSED.into(), v.into());
            }
            (enrolment(&info), is_managed(&info))
        };
        assert_eq!(tagged(Some("true"), None), (Enrolment::Managed, true));
        assert_eq!(tagged(Some("True"), None), (Enrolment::NearMiss, false));
        // A near miss is not managed, paused or not.
        assert_eq!(
            tagged(Some(" true"), Some("true")),
            (Enrolment::NearMiss, false)
        );
        assert_eq!(tagged(Some("false"), None), (Enrolment::NotManaged, false));
        assert_eq!(tagged(None, Some("true")), (Enrolment::NotManaged, false));
        // Paused keeps its looser reading: in doubt, rekey keeps away.
        assert_eq!(
            tagged(Some("true"), Some(" True ")),
            (Enrolment::Paused, true)
        );
        assert_eq!(
            tagged(Some("true"), Some("false")),
            (Enrolment::Managed, true)
        );
        assert!(Enrolment::NearMiss.is_shown() && Enrolment::Paused.is_shown());
        assert!(!Enrolment::NotManaged.is_shown());
        let e = not_managed("s", Enrolment::NearMiss);
        assert_eq!(e.kind(), "SecretNotManaged");
        assert!(e.to_string().contains("rekey:managed=true"), "{e}");
        assert!(e.to_string().contains("exactly"), "{e}");
        assert!(!not_managed("s", Enrolment::NotManaged)
            .to_string()
            .contains("exactly"));
    }
}
