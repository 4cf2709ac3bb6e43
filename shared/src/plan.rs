//! Pure decisions: which key to delete to make room for a new one, and what
//! cleanup may do to superseded and inactive keys. No I/O here; the steps
//! gather the facts, ask a function below, and carry out its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{AccessKey, KeyStatus, LastUsed};
use crate::records::{trusted_since, Records};

/// What a key is to the secret being rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// Held by the AWSCURRENT version: never deactivated or deleted.
    Current,
    /// Held by the AWSPENDING version of the rotation in progress.
    Pending,
    /// Superseded (held by the AWSPREVIOUS version, or recorded so by
    /// rekey): in its grace period until cleanup deactivates it.
    Previous,
    /// Held by no version rekey reads.
    Unreferenced,
}

/// A key of the user, with what the step knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key, as the provider lists it.
    pub key: AccessKey,
    /// What it is to the secret (see [`key_role`]).
    pub role: KeyRole,
    /// `None` when not looked up (only orphan candidates are).
    pub last_used: Option<LastUsed>,
}

/// The facts about the secret that making room depends on.
#[derive(Clone, Debug)]
pub struct RoomContext<'a> {
    /// The user, for the message when blocked.
    pub user: &'a str,
    /// The provider's per-user key limit.
    pub limit: usize,
    /// When the AWSCURRENT version was created: an orphan is newer.
    pub current_version_created: SystemTime,
    /// When each superseded key's grace period ends, where known.
    pub grace_ends: BTreeMap<String, SystemTime>,
}

/// What to delete before creating a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// Orphans (see [`is_orphan`]): always reclaimed, at the limit or not,
    /// so an interrupted attempt leaves nothing behind.
    pub orphans: Vec<String>,
    /// At the limit, the oldest inactive key that may go.
    pub inactive: Option<String>,
}

/// Why no key may be removed: every key with the reason it stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The user at its limit.
    pub user: String,
    /// The provider's per-user key limit.
    pub limit: usize,
    /// Every key with the reason it stays: (key id, reason).
    pub kept: Vec<(String, String)>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user {} already has {} access keys (the limit) and none may be removed: ",
            self.user, self.limit
        )?;
        for (i, (id, why)) in self.kept.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{id} {why}")?;
        }
        f.write_str(". Nothing was changed. Wait for the grace period to end and run rekey-cleanup, or deactivate a key that is no longer used, then rotate again")
    }
}

/// A key left by an attempt that crashed before its secret was stored:
/// active, held by no version, created after the AWSCURRENT version, and
/// never used (or, where the provider cannot tell, not known to be used).
pub fn is_orphan(facts: &KeyFacts, current_version_created: SystemTime) -> bool {
    is_orphan_candidate(facts, current_version_created)
        && matches!(facts.last_used, Some(LastUsed::Never | LastUsed::Unknown))
}

/// Keys that are orphans if they were never used: only these need their
/// last use looked up.
pub fn is_orphan_candidate(facts: &KeyFacts, current_version_created: SystemTime) -> bool {
    // A provider's time (the key's creation, to the second) against Secrets
    // Manager's (the version's creation): both are the services' own UTC
    // clocks, and the key is made before its version is stored, so a key
    // of the current rotation is never newer than its version; compared to
    // the whole second, as the providers date keys.
    facts.key.status == KeyStatus::Active
        && facts.role == KeyRole::Unreferenced
        && whole_seconds(facts.key.created) > whole_seconds(current_version_created)
}

/// Whether making room may delete anything: the user is at the limit, or
/// a key held by no version but AWSCURRENT's may be an orphan. If not,
/// create reads nothing more (no AWSPREVIOUS, no last use).
pub fn room_may_be_needed(
    keys: &[AccessKey],
    current: Option<&str>,
    limit: usize,
    current_version_created: SystemTime,
) -> bool {
    keys.len() >= limit
        || keys.iter().any(|key| {
            let facts = KeyFacts {
                role: label_role(key, current, None),
                key: key.clone(),
                last_used: None,
            };
            is_orphan_candidate(&facts, current_version_created)
        })
}

/// Secrets Manager dates versions to the second, IAM dates keys finer: a
/// key made in the same second as the version is not counted as newer.
fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decides how to make room for a new key (invariants current-key-kept,
/// key-limit and one-key-per-token):
/// every orphan is reclaimed; if the user is still at the limit, the oldest
/// INACTIVE key goes, whatever its age; otherwise nothing may be removed and
/// the answer is why. The AWSCURRENT and AWSPENDING keys never go.
pub fn make_room(keys: &[KeyFacts], ctx: &RoomContext<'_>) -> Result<Room, Blocked> {
    let orphans: Vec<String> = keys
        .iter()
        .filter(|f| is_orphan(f, ctx.current_version_created))
        .map(|f| f.key.id.clone())
        .collect();
    if keys.len() - orphans.len() < ctx.limit {
        return Ok(Room {
            orphans,
            inactive: None,
        });
    }
    let removable = |f: &&KeyFacts| !matches!(f.role, KeyRole::Current | KeyRole::Pending);
    let oldest =
        |a: &&KeyFacts, b: &&KeyFacts| (a.key.created, &a.key.id).cmp(&(b.key.created, &b.key.id));
    if let Some(f) = keys
        .iter()
        .filter(removable)
        .filter(|f| f.key.status == KeyStatus::Inactive)
        .min_by(oldest)
    {
        return Ok(Room {
            orphans,
            inactive: Some(f.key.id.clone()),
        });
    }
    Err(Blocked {
        user: ctx.user.to_owned(),
        limit: ctx.limit,
        kept: keys
            .iter()
            .map(|f| (f.key.id.clone(), why_kept(f, ctx)))
            .collect(),
    })
}

fn why_kept(f: &KeyFacts, ctx: &RoomContext<'_>) -> String {
    match f.role {
        KeyRole::Current => "is the AWSCURRENT key".into(),
        KeyRole::Pending => "is the AWSPENDING key of the rotation in progress".into(),
        KeyRole::Previous => match ctx.grace_ends.get(&f.key.id) {
            Some(end) => format!(
                "is a superseded key, still active in its grace period (ends {}; rekey-cleanup deactivates it then)",
                timestamp(*end)
            ),
            None => "is a superseded key, still active in its grace period (its clock starts at the next rekey-cleanup run)".into(),
        },
        // The provider's creation time against Secrets Manager's version
        // time, as in `is_orphan_candidate`.
        KeyRole::Unreferenced
            if whole_seconds(f.key.created) <= whole_seconds(ctx.current_version_created) =>
        {
            "is active, held by no version of the secret and older than its current version, so something else may use it (deactivate it if nothing does)".into()
        }
        KeyRole::Unreferenced => match &f.last_used {
            Some(LastUsed::At { when, .. }) => format!(
                "is active, held by no version of the secret, and was used at {} (deactivate it if nothing uses it any more, e.g. the key of an abandoned rotation)",
                timestamp(*when)
            ),
            _ => "is active and held by no version of the secret (deactivate it if nothing uses it, e.g. the key of an abandoned rotation)".into(),
        },
    }
}

/// What a step knows of the AWSPENDING version of a rotation in progress.
#[derive(Clone, Copy, Debug)]
pub enum PendingFacts<'a> {
    /// It holds no value yet, or a copy of the current key: createSecret
    /// has still to store the new key (the hook's version, made by Secrets
    /// Manager before it calls createSecret).
    Empty,
    /// It holds this new key.
    Key {
        /// The new key.
        id: &'a str,
        /// When the version was created.
        created: SystemTime,
    },
    /// It is not a valid secret, or names another user or provider.
    Foreign,
    /// It was promoted already and superseded since (AWSPENDING is a
    /// leftover of a finish that stopped before taking it off).
    Promoted,
}

/// A key just created may be missing from the provider's list for a while
/// (IAM is eventually consistent): a pending version younger than this is
/// not judged dead for a key missing from the list.
pub const PENDING_SETTLE: Duration = Duration::from_secs(15 * 60);

/// Why the rotation in progress can never finish, if it cannot (invariant
/// liveness): its version names someone else, or holds a key the user no
/// longer has active. Such a version is replaced, never resumed: AWSPENDING
/// is taken off it so the next rotation starts with a new token (versions
/// are immutable).
pub fn dead_pending(
    pending: PendingFacts<'_>,
    keys: &[AccessKey],
    now: SystemTime,
) -> Option<&'static str> {
    match pending {
        PendingFacts::Empty => None,
        PendingFacts::Foreign => {
            Some("it is not a valid secret of the same user and provider as AWSCURRENT")
        }
        PendingFacts::Promoted => Some("it was promoted already and superseded since"),
        PendingFacts::Key { id, created } => match keys.iter().find(|k| k.id == id) {
            Some(k) if k.status == KeyStatus::Inactive => Some("its key was deactivated"),
            Some(_) => None,
            None if created + PENDING_SETTLE > now => None,
            None => Some("its key no longer exists"),
        },
    }
}

/// Whether a secret whose AWSCURRENT key exists since `key_since`
/// (`records::key_since`, never the latest version's creation: an edit
/// that keeps the key moves no clock) is due for rotation with `period`.
pub fn is_due(key_since: SystemTime, period: Duration, now: SystemTime) -> bool {
    ended(key_since, period, now)
}

/// Whether a period of `length` that began at `start` has ended by `now`
/// (a period too long to end never has).
pub fn ended(start: SystemTime, length: Duration, now: SystemTime) -> bool {
    start.checked_add(length).is_some_and(|end| end <= now)
}

/// RFC 3339 to the second, for messages and records.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whether a key used at `last` is still serving someone. When the
/// provider cannot tell, the check is skipped (false).
pub fn recently_used(last: &LastUsed, now: SystemTime, idle_before: Duration) -> bool {
    match last {
        LastUsed::Never | LastUsed::Unknown => false,
        LastUsed::At { when, .. } => match now.duration_since(*when) {
            Ok(age) => age < idle_before,
            // A use in the future (clock skew): recent, unless idleness is off.
            Err(_) => !idle_before.is_zero(),
        },
    }
}

/// What cleanup may do to one secret's user's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the grace-period clock of the AWSPREVIOUS key now.
    RecordSuperseded(String),
    /// Deactivate the AWSPREVIOUS key, unless it was used recently.
    Deactivate(String),
    /// Start the deletion clock of an inactive key now.
    RecordInactive(String),
    /// Delete an inactive key.
    Delete(String),
    /// Drop the records of a key that no longer exists.
    Forget(String),
    /// Drop the timer records (superseded, inactive) of the current or
    /// pending key: a rollback left them.
    ForgetTimers(String),
}

/// The next step in a key's retirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetirementStep {
    /// A superseded key is deactivated at the end of its grace period.
    Deactivation,
    /// An inactive key is deleted at the end of its deletion period.
    Deletion,
}

/// A key waiting for its next retirement step, and when that step is due.
/// In cleanup's report: `{"AccessKeyId", "Next", "Due"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    /// The key.
    #[serde(rename = "AccessKeyId")]
    pub key_id: String,
    /// Its next step: `deactivation` or `deletion`.
    #[serde(rename = "Next")]
    pub next: RetirementStep,
    /// When that step is due (RFC 3339 to the second in the report).
    #[serde(rename = "Due", serialize_with = "serialize_timestamp")]
    pub due: SystemTime,
}

fn serialize_timestamp<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*t))
}

/// What cleanup does now, and what it leaves for a later run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupPlan {
    /// What to do now, in order.
    pub actions: Vec<Action>,
    /// Keys whose next retirement step is not due yet.
    pub waiting: Vec<Scheduled>,
}

/// The facts cleanup decides on.
pub struct CleanupInput<'a> {
    /// The user's keys, as the provider lists them.
    pub keys: &'a [AccessKey],
    /// The key the AWSCURRENT version holds.
    pub current: Option<&'a str>,
    /// The key of the rotation in progress, if its version holds one.
    pub pending: Option<&'a str>,
    /// The token of the rotation in progress (its version's id), if one is
    /// in progress and not abandoned.
    pub pending_token: Option<&'a str>,
    /// The key the AWSPREVIOUS version holds (see `Rekey::previous_key`).
    pub previous: Option<&'a str>,
    /// rekey's records on the secret.
    pub records: &'a Records,
    /// No record is trusted to be earlier than this: since when the
    /// AWSCURRENT key exists (`records::key_since`, its creation as the
    /// provider reports it). rekey supersedes a key only once the key that
    /// supersedes it is made, and an edit that keeps the key does not move
    /// it (invariant retire-by-record, the clocks).
    pub floor: SystemTime,
    /// The time now.
    pub now: SystemTime,
    /// `REKEY_DEACTIVATE_AFTER`: a superseded key's grace period.
    pub deactivate_after: Duration,
    /// `REKEY_DELETE_AFTER`: an inactive key's deletion period.
    pub delete_after: Duration,
}

/// Whether `key`, neither current nor pending, is superseded: the
/// AWSPREVIOUS version holds it (`previous`, read by `Rekey::previous_key`),
/// or rekey's records make it rekey's to retire ([`Records::retirable`]).
/// The one rule by which create and cleanup tell a superseded key.
/// Create once counted a `created` record at once, cleanup only once the
/// key has settled (`PENDING_SETTLE`: a key just made may be between its
/// record and its store). The settled rule is the one safe for both:
/// cleanup must not retire a key about to be stored, and in create the
/// role of a non-orphan key changes no deletion, only how the
/// `KeyLimitReached` message names it (a young one is "held by no
/// version" rather than "a superseded key").
pub fn is_superseded(
    key: &AccessKey,
    previous: Option<&str>,
    records: &Records,
    now: SystemTime,
) -> bool {
    previous == Some(key.id.as_str()) || records.retirable(key, now)
}

/// What a key is to the secret, for making room. `last_used` is known
/// for orphan candidates only.
pub struct RoleFacts<'a> {
    /// The key the AWSCURRENT version holds.
    pub current: Option<&'a str>,
    /// The key the AWSPREVIOUS version holds.
    pub previous: Option<&'a str>,
    /// rekey's records on the secret.
    pub records: &'a Records,
    /// When the AWSCURRENT version was created: an orphan is newer.
    pub current_version_created: SystemTime,
    /// The time now.
    pub now: SystemTime,
}

/// The role of `key` by the labels alone: the AWSCURRENT key is `Current`,
/// the AWSPREVIOUS key `Previous`, any other `Unreferenced`.
pub fn label_role(key: &AccessKey, current: Option<&str>, previous: Option<&str>) -> KeyRole {
    let id = Some(key.id.as_str());
    if id == current {
        KeyRole::Current
    } else if id == previous {
        KeyRole::Previous
    } else {
        KeyRole::Unreferenced
    }
}

/// The role of `key` when making room: the AWSCURRENT key is `Current`;
/// the AWSPREVIOUS key is `Previous`; an orphan (never stored, never
/// used) is `Unreferenced`, reclaimed whatever its records say, so a
/// token's retry never leaves a second key of its own (invariant
/// one-key-per-token); a key rekey's records retire (see
/// [`is_superseded`]) is `Previous` and waits for cleanup.
pub fn key_role(key: &AccessKey, last_used: Option<&LastUsed>, facts: &RoleFacts<'_>) -> KeyRole {
    let by_label = label_role(key, facts.current, facts.previous);
    if by_label != KeyRole::Unreferenced {
        return by_label;
    }
    let unreferenced = KeyFacts {
        key: key.clone(),
        role: KeyRole::Unreferenced,
        last_used: last_used.cloned(),
    };
    if !is_orphan(&unreferenced, facts.current_version_created)
        && is_superseded(key, facts.previous, facts.records, facts.now)
    {
        KeyRole::Previous
    } else {
        KeyRole::Unreferenced
    }
}

/// Decides cleanup for one secret (invariants current-key-kept and
/// retire-by-record). A key is superseded when [`is_superseded`] says so:
/// it is deactivated once `deactivate_after` has passed since; any
/// inactive key is deleted once `delete_after` has passed since it became
/// inactive. A missing record starts its clock now. The AWSCURRENT and
/// AWSPENDING keys are never touched, and their records (left by a
/// rollback) are dropped.
pub fn plan_cleanup(input: &CleanupInput<'_>) -> CleanupPlan {
    let mut plan = CleanupPlan::default();
    for key in input.keys {
        if protected(input, &key.id) {
            continue;
        }
        if let Some(retirement) = next_retirement(input, key) {
            plan_retirement(input, retirement, &mut plan);
        }
    }
    plan.actions.extend(stale_records(input));
    plan
}

/// Invariant current-key-kept: the AWSCURRENT key, and the key of the
/// rotation in progress, are never retired. A key rekey made for the token
/// in progress and never stored (its store failed, and so did the delete
/// that undoes it) is that rotation's too: its next attempt reclaims it
/// (invariant one-key-per-token), which a timer record would forbid.
fn protected(input: &CleanupInput<'_>, id: &str) -> bool {
    let made_for_pending = || {
        let records = input.records;
        input.pending_token.is_some_and(|token| {
            records.created_for.get(id).is_some_and(|t| t == token)
                && input
                    .keys
                    .iter()
                    .any(|k| k.id == id && records.made_by_rekey(k))
        })
    };
    input.current == Some(id) || input.pending == Some(id) || made_for_pending()
}

/// One key's next retirement step: its record (if any), the action that
/// starts its clock, the action when due, and the period.
struct Retirement {
    key_id: String,
    recorded: Option<SystemTime>,
    record: Action,
    act: Action,
    next: RetirementStep,
    period: Duration,
}

/// The next retirement step of an unprotected key: deactivation of a
/// superseded active key, deletion of an inactive key; `None` for an
/// active key that is not superseded.
fn next_retirement(input: &CleanupInput<'_>, key: &AccessKey) -> Option<Retirement> {
    let id = key.id.clone();
    Some(match key.status {
        KeyStatus::Active if !is_superseded(key, input.previous, input.records, input.now) => {
            return None
        }
        // A key known only by its `created` record starts its grace period
        // when cleanup first sees it so (a rollback may have made it
        // current until moments ago).
        KeyStatus::Active => Retirement {
            recorded: input.records.superseded.get(&id).copied(),
            record: Action::RecordSuperseded(id.clone()),
            act: Action::Deactivate(id.clone()),
            next: RetirementStep::Deactivation,
            period: input.deactivate_after,
            key_id: id,
        },
        KeyStatus::Inactive => Retirement {
            recorded: input.records.inactive.get(&id).copied(),
            record: Action::RecordInactive(id.clone()),
            act: Action::Delete(id.clone()),
            next: RetirementStep::Deletion,
            period: input.delete_after,
            key_id: id,
        },
    })
}

/// Starts the clock of `r` if it has no record, then acts if it is due,
/// else schedules it.
fn plan_retirement(input: &CleanupInput<'_>, r: Retirement, plan: &mut CleanupPlan) {
    let since = match r.recorded {
        Some(t) => trusted_since(t, input.floor),
        None => {
            plan.actions.push(r.record);
            input.now
        }
    };
    let due = since + r.period;
    if input.now >= due {
        plan.actions.push(r.act);
    } else {
        plan.waiting.push(Scheduled {
            key_id: r.key_id,
            next: r.next,
            due,
        });
    }
}

/// The records to drop: every record of a key that no longer exists
/// (`Forget`), then the timer records of the current or pending key
/// (`ForgetTimers`).
fn stale_records(input: &CleanupInput<'_>) -> Vec<Action> {
    let records = input.records;
    let listed = |id: &String| input.keys.iter().any(|k| &k.id == id);
    // A `created` record younger than PENDING_SETTLE may be a key the
    // provider does not list yet: it is kept.
    let young = |id: &String| {
        records
            .created
            .get(id)
            .is_some_and(|t| *t + PENDING_SETTLE > input.now)
    };
    let gone: BTreeSet<&String> = (records.created.keys())
        .chain(records.superseded.keys())
        .chain(records.inactive.keys())
        .filter(|id| !listed(id) && !young(id))
        .collect();
    let timers_of_protected: BTreeSet<&String> = (records.superseded.keys())
        .chain(records.inactive.keys())
        .filter(|id| protected(input, id) && listed(id))
        .collect();
    let forget = gone.into_iter().map(|id| Action::Forget(id.clone()));
    let forget_timers = timers_of_protected
        .into_iter()
        .map(|id| Action::ForgetTimers(id.clone()));
    forget.chain(forget_timers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn key(id: &str, status: KeyStatus, created: u64) -> AccessKey {
        AccessKey {
            id: id.into(),
            status,
            created: at(created),
        }
    }

    fn facts(id: &str, status: KeyStatus, created: u64, role: KeyRole) -> KeyFacts {
        KeyFacts {
            key: key(id, status, created),
            role,
            last_used: None,
        }
    }

    fn ctx() -> RoomContext<'static> {
        RoomContext {
            user: "alice",
            limit: 2,
            current_version_created: at(1_000),
            grace_ends: [("PREV".to_owned(), at(90_000))].into(),
        }
    }

    use KeyRole::*;
    use KeyStatus::*;

    fn orphan(id: &str) -> KeyFacts {
        let mut f = facts(id, Active, 2_000, Unreferenced);
        f.last_used = Some(LastUsed::Never);
        f
    }

    fn room(orphans: &[&str], inactive: Option<&str>) -> Result<Room, Blocked> {
        Ok(Room {
            orphans: orphans.iter().map(|s| s.to_string()).collect(),
            inactive: inactive.map(str::to_owned),
        })
    }

    #[test]
    fn room_is_looked_into_at_the_limit_or_for_a_possible_orphan() {
        let cur = key("CUR", Active, 900);
        let young = key("YOUNG", Active, 2_000);
        let old = key("OLD", Active, 500);
        let needed = |keys: &[AccessKey]| room_may_be_needed(keys, Some("CUR"), 2, at(1_000));
        assert!(!needed(std::slice::from_ref(&cur)));
        assert!(!needed(std::slice::from_ref(&old)));
        assert!(needed(std::slice::from_ref(&young)));
        assert!(needed(&[cur, old]));
    }

    #[test]
    fn below_limit_is_free() {
        assert_eq!(make_room(&[], &ctx()), room(&[], None));
        assert_eq!(
            make_room(&[facts("A", Active, 1, Current)], &ctx()),
            room(&[], None)
        );
    }

    #[test]
    fn oldest_inactive_goes_first() {
        let keys = [
            facts("NEWER", Inactive, 500, Unreferenced),
            facts("OLDER", Inactive, 100, Previous),
        ];
        assert_eq!(make_room(&keys, &ctx()), room(&[], Some("OLDER")));
    }

    #[test]
    fn inactive_current_key_is_never_deleted() {
        let keys = [
            facts("CUR", Inactive, 100, Current),
            facts("PREV", Active, 50, Previous),
        ];
        assert!(make_room(&keys, &ctx()).is_err());
    }

    #[test]
    fn an_orphan_is_reclaimed_even_below_the_limit() {
        assert_eq!(
            make_room(&[orphan("ORPHAN")], &ctx()),
            room(&["ORPHAN"], None)
        );
    }

    #[test]
    fn reclaiming_an_orphan_makes_room() {
        let keys = [facts("CUR", Active, 900, Current), orphan("ORPHAN")];
        assert_eq!(make_room(&keys, &ctx()), room(&["ORPHAN"], None));
        let keys = [orphan("ORPHAN"), facts("OLD", Inactive, 10, Unreferenced)];
        assert_eq!(
            make_room(&keys, &ctx()),
            room(&["ORPHAN"], None),
            "the inactive key may stay"
        );
    }

    #[test]
    fn used_or_old_unreferenced_keys_are_not_orphans() {
        let mut used = facts("USED", Active, 2_000, Unreferenced);
        used.last_used = Some(LastUsed::At {
            when: at(2_500),
            service: Some("s3".into()),
        });
        let mut old = facts("OLD", Active, 500, Unreferenced);
        old.last_used = Some(LastUsed::Never);
        let mut unknown = facts("UNKNOWN", Active, 2_000, Unreferenced);
        unknown.last_used = None;
        for other in [used, old, unknown] {
            let keys = [facts("CUR", Active, 900, Current), other.clone()];
            match make_room(&keys, &ctx()) {
                Err(b) => {
                    let msg = b.to_string();
                    assert!(msg.contains("alice") && msg.contains("CUR"), "{msg}");
                    assert!(msg.contains(&other.key.id), "{msg}");
                }
                r => panic!("{other:?}: {r:?}"),
            }
        }
    }

    #[test]
    fn without_a_last_used_api_an_orphan_is_judged_on_the_other_conditions() {
        let mut young = facts("YOUNG", Active, 2_000, Unreferenced);
        young.last_used = Some(LastUsed::Unknown);
        let mut old = facts("OLD", Active, 500, Unreferenced);
        old.last_used = Some(LastUsed::Unknown);
        let keys = [facts("CUR", Active, 900, Current), young.clone()];
        let room = make_room(&keys, &ctx()).unwrap();
        assert_eq!(room.orphans, vec!["YOUNG".to_owned()]);
        let keys = [facts("CUR", Active, 900, Current), old];
        assert!(
            make_room(&keys, &ctx()).is_err(),
            "a key older than AWSCURRENT is never an orphan"
        );
    }

    #[test]
    fn blocked_by_grace_period_says_when_it_ends() {
        let keys = [
            facts("CUR", Active, 900, Current),
            facts("PREV", Active, 100, Previous),
        ];
        let b = make_room(&keys, &ctx()).expect_err("blocked");
        let msg = b.to_string();
        assert!(msg.contains("PREV is a superseded key"), "{msg}");
        assert!(msg.contains(&timestamp(at(90_000))), "{msg}");
        assert!(msg.contains("CUR is the AWSCURRENT key"), "{msg}");
    }

    #[test]
    fn due_when_the_period_has_passed() {
        let day = Duration::from_secs(86_400);
        assert!(!is_due(at(0), day, at(86_399)));
        assert!(is_due(at(0), day, at(86_400)));
        assert!(is_due(at(5), Duration::ZERO, at(5)));
    }

    #[test]
    fn recently_used_respects_idle_window() {
        let used = LastUsed::At {
            when: at(1_000),
            service: None,
        };
        let h = Duration::from_secs(3600);
        assert!(recently_used(&used, at(1_000 + 1_800), h));
        assert!(!recently_used(&used, at(1_000 + 3_600), h));
        assert!(!recently_used(&LastUsed::Never, at(5), h));
        assert!(
            !recently_used(&LastUsed::Unknown, at(5), h),
            "where use cannot be known, the check is skipped"
        );
        assert!(!recently_used(&used, at(1_000), Duration::ZERO));
        assert!(
            recently_used(&used, at(10), h),
            "future use counts as recent"
        );
    }

    fn cleanup_input<'a>(
        keys: &'a [AccessKey],
        records: &'a Records,
        now: u64,
    ) -> CleanupInput<'a> {
        CleanupInput {
            keys,
            current: Some("CUR"),
            pending: None,
            pending_token: None,
            previous: Some("PREV"),
            records,
            floor: at(0),
            now: at(now),
            deactivate_after: Duration::from_secs(100),
            delete_after: Duration::from_secs(1_000),
        }
    }

    #[test]
    fn a_key_made_for_the_rotation_in_progress_is_left_to_it() {
        let keys = vec![
            key("CUR", KeyStatus::Active, 0),
            key("NEW", KeyStatus::Active, 100),
        ];
        let mut records = Records::default();
        records.created.insert("NEW".into(), at(100));
        records.created_for.insert("NEW".into(), "T1".into());
        records.superseded.insert("NEW".into(), at(2_000));
        let mut input = cleanup_input(&keys, &records, 10_000);
        input.previous = None;
        // Another token's, or no rotation in progress: retired as rekey's.
        assert!(plan_cleanup(&input)
            .actions
            .contains(&Action::Deactivate("NEW".into())));
        input.pending_token = Some("T0");
        assert!(plan_cleanup(&input)
            .actions
            .contains(&Action::Deactivate("NEW".into())));
        // The token in progress made it: left for its next attempt to
        // reclaim, and a timer record on it dropped.
        input.pending_token = Some("T1");
        assert_eq!(
            plan_cleanup(&input).actions,
            vec![Action::ForgetTimers("NEW".into())]
        );
    }

    #[test]
    fn cleanup_starts_clocks_then_acts_when_due() {
        let keys = [key("CUR", Active, 10), key("PREV", Active, 5)];
        let none = Records::default();
        let plan = plan_cleanup(&cleanup_input(&keys, &none, 50));
        assert_eq!(plan.actions, vec![Action::RecordSuperseded("PREV".into())]);
        assert_eq!(plan.waiting[0].due, at(150));

        let mut rec = Records::default();
        rec.superseded.insert("PREV".into(), at(50));
        let plan = plan_cleanup(&cleanup_input(&keys, &rec, 149));
        assert!(plan.actions.is_empty());
        let plan = plan_cleanup(&cleanup_input(&keys, &rec, 150));
        assert_eq!(plan.actions, vec![Action::Deactivate("PREV".into())]);
    }

    #[test]
    fn cleanup_deletes_inactive_after_period_and_forgets_gone_keys() {
        let keys = [key("CUR", Active, 10), key("OLD", Inactive, 1)];
        let mut rec = Records::default();
        rec.inactive.insert("OLD".into(), at(100));
        rec.superseded.insert("GONE".into(), at(1));
        rec.inactive.insert("GONE".into(), at(1));
        let plan = plan_cleanup(&cleanup_input(&keys, &rec, 1_100));
        assert_eq!(
            plan.actions,
            vec![Action::Delete("OLD".into()), Action::Forget("GONE".into())]
        );
    }

    #[test]
    fn a_superseded_key_is_retired_by_its_record_whatever_the_labels_say() {
        // A console edit moved AWSPREVIOUS onto a version holding the
        // current key: the superseded key is still retired.
        let keys = [key("CUR", Active, 10), key("OLD", Active, 5)];
        let mut rec = Records::default();
        rec.superseded.insert("OLD".into(), at(50));
        let mut input = cleanup_input(&keys, &rec, 150);
        input.previous = Some("CUR");
        assert_eq!(
            plan_cleanup(&input).actions,
            vec![Action::Deactivate("OLD".into())]
        );
    }

    #[test]
    fn a_record_is_not_trusted_before_the_floor() {
        // A record set by hand to long ago does not skip the grace period.
        let keys = [key("CUR", Active, 10), key("PREV", Active, 5)];
        let mut rec = Records::default();
        rec.superseded.insert("PREV".into(), at(1));
        let mut input = cleanup_input(&keys, &rec, 150);
        input.floor = at(100);
        let plan = plan_cleanup(&input);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.waiting[0].due, at(200));
    }

    #[test]
    fn edits_that_keep_the_key_move_no_clock() {
        // CUR superseded PREV at 50 (its record); edits then made new
        // AWSCURRENT versions holding CUR at 120 and 140. The floor is
        // CUR's creation, so the grace period ends at 150 whatever the
        // edits, and the rotation is due when CUR is the period old.
        let keys = [key("CUR", Active, 10), key("PREV", Active, 5)];
        let mut rec = Records::default();
        rec.superseded.insert("PREV".into(), at(50));
        for version in [10, 120, 140] {
            let floor = crate::records::key_since(&keys, Some("CUR"), at(version));
            let mut input = cleanup_input(&keys, &rec, 149);
            input.floor = floor;
            assert_eq!(plan_cleanup(&input).waiting[0].due, at(150));
            input.now = at(150);
            assert_eq!(
                plan_cleanup(&input).actions,
                vec![Action::Deactivate("PREV".into())]
            );
            let period = Duration::from_secs(100);
            assert!(!is_due(floor, period, at(109)));
            assert!(is_due(floor, period, at(110)));
        }
    }

    #[test]
    fn current_and_pending_keys_are_never_touched_and_their_records_go() {
        // After a rollback the current key may carry a stale record.
        let keys = [
            key("CUR", Inactive, 10),
            key("PEND", Active, 20),
            key("PREV", Active, 5),
        ];
        let mut rec = Records::default();
        rec.superseded.insert("CUR".into(), at(1));
        rec.superseded.insert("PEND".into(), at(1));
        rec.superseded.insert("PREV".into(), at(1));
        let mut input = cleanup_input(&keys, &rec, 1_000);
        input.pending = Some("PEND");
        assert_eq!(
            plan_cleanup(&input).actions,
            vec![
                Action::Deactivate("PREV".into()),
                Action::ForgetTimers("CUR".into()),
                Action::ForgetTimers("PEND".into()),
            ]
        );
    }

    #[test]
    fn a_key_rekey_made_that_is_no_longer_pending_is_retired() {
        // An abandoned rotation's key (AWSPENDING removed, or a rollback or
        // edit took the labels away): only its created record says it is
        // rekey's. Its grace runs from when cleanup first sees it so.
        let settled = PENDING_SETTLE.as_secs() + 20;
        let keys = [key("CUR", Active, 10), key("LOST", Active, 20)];
        let mut rec = Records::default();
        rec.created.insert("LOST".into(), at(20));
        rec.created.insert("CUR".into(), at(10));
        let mut input = cleanup_input(&keys, &rec, settled);
        input.previous = None;
        let plan = plan_cleanup(&input);
        assert_eq!(plan.actions, vec![Action::RecordSuperseded("LOST".into())]);
        assert_eq!(plan.waiting[0].due, at(settled + 100));
        // While it is pending it is left alone, record and all.
        input.pending = Some("LOST");
        assert!(plan_cleanup(&input).actions.is_empty());
        // Just made (it may be between its record and its store): left alone.
        let mut input = cleanup_input(&keys, &rec, 30);
        input.previous = None;
        assert!(plan_cleanup(&input).actions.is_empty());
    }

    #[test]
    fn key_roles_follow_labels_then_records_and_orphans_stay_unreferenced() {
        let mut records = Records::default();
        for id in ["MADE", "ORPHAN", "YOUNG"] {
            records.created.insert(id.into(), at(2_000));
        }
        records.superseded.insert("OLD".into(), at(1));
        let settled = 2_000 + PENDING_SETTLE.as_secs();
        let facts = RoleFacts {
            current: Some("CUR"),
            previous: Some("PREV"),
            records: &records,
            current_version_created: at(1_000),
            now: at(settled),
        };
        let used = LastUsed::At {
            when: at(2_100),
            service: None,
        };
        let role = |id: &str, created: u64, last: Option<&LastUsed>| {
            key_role(&key(id, Active, created), last, &facts)
        };
        assert_eq!(role("CUR", 900, None), Current);
        assert_eq!(role("PREV", 2_000, Some(&LastUsed::Never)), Previous);
        assert_eq!(role("OLD", 500, None), Previous);
        assert_eq!(role("MADE", 2_000, Some(&used)), Previous);
        assert_eq!(role("ORPHAN", 2_000, Some(&LastUsed::Never)), Unreferenced);
        assert_eq!(role("HAND", 500, None), Unreferenced);
        // A key rekey just made is not yet superseded (it may be between
        // its record and its store).
        let young = RoleFacts {
            now: at(2_100),
            ..facts
        };
        assert_eq!(
            key_role(&key("YOUNG", Active, 2_000), Some(&used), &young),
            Unreferenced
        );
    }

    #[test]
    fn a_young_created_record_of_an_unlisted_key_is_kept() {
        // The provider may not list a key made moments ago.
        let keys = [key("CUR", Active, 10)];
        let mut rec = Records::default();
        rec.created.insert("NEW".into(), at(100));
        assert!(plan_cleanup(&cleanup_input(&keys, &rec, 200))
            .actions
            .is_empty());
        let later = 100 + PENDING_SETTLE.as_secs();
        assert_eq!(
            plan_cleanup(&cleanup_input(&keys, &rec, later)).actions,
            vec![Action::Forget("NEW".into())]
        );
    }

    #[test]
    fn a_pending_version_is_dead_when_its_key_is_gone_or_inactive() {
        let keys = [key("CUR", Active, 10), key("OFF", Inactive, 20)];
        let settled = at(0) + PENDING_SETTLE + Duration::from_secs(1);
        let pending = |id| PendingFacts::Key { id, created: at(0) };
        assert_eq!(dead_pending(PendingFacts::Empty, &keys, settled), None);
        assert!(dead_pending(PendingFacts::Foreign, &keys, at(0)).is_some());
        assert!(dead_pending(PendingFacts::Promoted, &keys, at(0)).is_some());
        assert!(dead_pending(pending("GONE"), &keys, settled).is_some());
        assert!(dead_pending(pending("OFF"), &keys, settled).is_some());
        assert_eq!(dead_pending(pending("CUR"), &keys, settled), None);
        // A young version is given time: IAM may not list its key yet.
        assert_eq!(dead_pending(pending("GONE"), &keys, at(60)), None);
    }

    #[test]
    fn zero_periods_act_at_once() {
        let keys = [key("PREV", Active, 5), key("X", Inactive, 1)];
        let none = Records::default();
        let mut input = cleanup_input(&keys, &none, 50);
        input.deactivate_after = Duration::ZERO;
        input.delete_after = Duration::ZERO;
        let plan = plan_cleanup(&input);
        assert_eq!(
            plan.actions,
            vec![
                Action::RecordSuperseded("PREV".into()),
                Action::Deactivate("PREV".into()),
                Action::RecordInactive("X".into()),
                Action::Delete("X".into()),
            ]
        );
    }

    // ---- properties ----

    fn arb_keys() -> impl Strategy<Value = Vec<KeyFacts>> {
        let role = prop_oneof![
            Just(Current),
            Just(Pending),
            Just(Previous),
            Just(Unreferenced)
        ];
        let status = prop_oneof![Just(Active), Just(Inactive)];
        let used = prop_oneof![
            Just(None),
            Just(Some(LastUsed::Never)),
            Just(Some(LastUsed::Unknown)),
            (0u64..5_000).prop_map(|t| Some(LastUsed::At {
                when: at(t),
                service: None
            })),
        ];
        proptest::collection::vec((status, 0u64..5_000, role, used), 0..4).prop_map(|v| {
            let mut seen_current = false;
            v.into_iter()
                .enumerate()
                .map(|(i, (status, created, mut role, last_used))| {
                    // At most one key is current.
                    if role == Current {
                        if seen_current {
                            role = Unreferenced;
                        }
                        seen_current = true;
                    }
                    KeyFacts {
                        key: key(&format!("K{i}"), status, created),
                        role,
                        last_used,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn make_room_never_removes_what_it_must_keep(keys in arb_keys(), created in 0u64..5_000, limit in 1usize..4) {
            // A provider never holds more keys than its limit.
            prop_assume!(keys.len() <= limit);
            let ctx = RoomContext { user: "u", limit, current_version_created: at(created), grace_ends: BTreeMap::new() };
            let find = |id: &str| keys.iter().find(|f| f.key.id == id).unwrap();
            let may_go = |g: &KeyFacts| g.key.status == Inactive && !matches!(g.role, Current | Pending);
            match make_room(&keys, &ctx) {
                Ok(room) => {
                    // Every orphan, and only orphans, are reclaimed.
                    let orphans: Vec<&str> = keys.iter()
                        .filter(|f| is_orphan(f, ctx.current_version_created))
                        .map(|f| f.key.id.as_str()).collect();
                    prop_assert_eq!(room.orphans.iter().map(String::as_str).collect::<Vec<_>>(), orphans.clone());
                    for id in &room.orphans {
                        let f = find(id);
                        prop_assert_eq!(f.role, Unreferenced);
                        prop_assert_eq!(f.key.status, Active);
                        prop_assert!(matches!(f.last_used, Some(LastUsed::Never | LastUsed::Unknown)), "never known to be used");
                        prop_assert!(whole_seconds(f.key.created) > whole_seconds(ctx.current_version_created));
                    }
                    let after = keys.len() - room.orphans.len() - usize::from(room.inactive.is_some());
                    prop_assert!(after < limit, "room is made");
                    if let Some(id) = room.inactive {
                        let f = find(&id);
                        prop_assert!(keys.len() - orphans.len() >= limit, "only at the limit");
                        prop_assert!(may_go(f));
                        for g in keys.iter().filter(|g| may_go(g)) {
                            prop_assert!(f.key.created <= g.key.created, "the oldest goes");
                        }
                    }
                }
                Err(b) => {
                    prop_assert!(keys.len() >= limit);
                    prop_assert_eq!(b.kept.len(), keys.len());
                    prop_assert!(!keys.iter().any(may_go));
                    prop_assert!(keys.len() - keys.iter().filter(|g| is_orphan(g, ctx.current_version_created)).count() >= limit);
                }
            }
        }

        #[test]
        fn cleanup_never_touches_current_and_only_retires_what_it_may(
            keys in arb_keys(),
            now in 0u64..10_000,
            deactivate in 0u64..3_000,
            delete in 0u64..3_000,
            recorded in proptest::collection::vec((0usize..4, 0u64..10_000, any::<bool>()), 0..6),
            floor in 0u64..10_000,
        ) {
            let plain: Vec<AccessKey> = keys.iter().map(|f| f.key.clone()).collect();
            let id_of = |role: KeyRole| keys.iter().find(|f| f.role == role).map(|f| f.key.id.clone());
            let current = id_of(Current);
            let previous = id_of(Previous);
            let mut records = Records::default();
            for (i, t, kind) in recorded {
                let map = match (kind, t % 3) {
                    (true, 0) => &mut records.created,
                    (true, _) => &mut records.superseded,
                    (false, _) => &mut records.inactive,
                };
                map.insert(format!("K{i}"), at(t));
            }
            let pending = id_of(Pending);
            let plan = plan_cleanup(&CleanupInput {
                keys: &plain,
                current: current.as_deref(),
                pending: pending.as_deref(),
                pending_token: None,
                previous: previous.as_deref(),
                records: &records,
                floor: at(floor),
                now: at(now),
                deactivate_after: Duration::from_secs(deactivate),
                delete_after: Duration::from_secs(delete),
            });
            for action in &plan.actions {
                match action {
                    Action::Deactivate(id) => {
                        let k = plain.iter().find(|k| &k.id == id).unwrap();
                        prop_assert!(Some(id) == previous.as_ref() || records.retirable(k, at(now)), "only a superseded key");
                        prop_assert_ne!(Some(id), current.as_ref());
                        prop_assert_ne!(Some(id), pending.as_ref());
                        // A record earlier than the floor is not believed.
                        let since = records.superseded.get(id).map_or(at(now), |t| (*t).max(at(floor)));
                        prop_assert!(at(now) >= since + Duration::from_secs(deactivate));
                    }
                    Action::Delete(id) => {
                        prop_assert_ne!(Some(id), current.as_ref());
                        prop_assert_ne!(Some(id), pending.as_ref());
                        let k = plain.iter().find(|k| &k.id == id).unwrap();
                        prop_assert_eq!(k.status, Inactive);
                        let since = records.inactive.get(id).map_or(at(now), |t| (*t).max(at(floor)));
                        prop_assert!(at(now) >= since + Duration::from_secs(delete));
                    }
                    Action::RecordSuperseded(id) | Action::RecordInactive(id) => {
                        prop_assert_ne!(Some(id), current.as_ref());
                        prop_assert_ne!(Some(id), pending.as_ref());
                    }
                    Action::Forget(id) => prop_assert!(!plain.iter().any(|k| &k.id == id)),
                    Action::ForgetTimers(id) => prop_assert!(
                        Some(id) == current.as_ref() || Some(id) == pending.as_ref()
                    ),
                }
            }
        }
    }
}
