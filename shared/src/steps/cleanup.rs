//! rekey-cleanup: deactivate superseded keys after their grace period and
//! delete inactive keys after theirs (`plan::plan_cleanup` decides). When
//! each period started is kept in rekey's records (`records`), so it
//! survives crashes; a missing record starts its clock now.

use std::time::SystemTime;

use serde::Serialize;
use tracing::{info, warn};

use super::{check_managed, InProgress, Keys, Rekey};
use crate::error::Result;
use crate::events::KeyHolder;
use crate::model::{AccessKey, LastUsed, ManagedSecret, AWSCURRENT, AWSPENDING};
use crate::plan::{self, timestamp, Action, CleanupInput, Scheduled};
use crate::ports::{Clock, KeyApi, Providers, SecretInfo, SecretVersion, Select, Vault};
use crate::records::{
    self, load_records, record_tag, CurrentRecord, CHECKED, CURRENT, INACTIVE, SUPERSEDED,
    TAG_PAUSED_SINCE,
};
use crate::triage::{self, PauseRecord};

/// What cleanup did to one secret.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SecretCleanup {
    /// The secret (its ARN in a sweep).
    pub secret_id: String,
    /// `cleaned` or `skipped`.
    pub status: &'static str,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The error type it was skipped with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// Since when the AWSCURRENT key exists (`records::key_since`: its
    /// creation as the provider reports it), for `CurrentKeyAgeDays`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_since: Option<String>,
    /// Keys deactivated in this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deactivated: Vec<String>,
    /// Keys deleted in this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Superseded keys left active because they are still being used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_use: Vec<InUse>,
    /// Keys whose next retirement step is not due yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Scheduled>,
    /// The version of a rotation that could never finish, whose AWSPENDING
    /// label cleanup took off (its token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<String>,
    /// Whose keys these are, for the events (not in the report).
    #[serde(skip)]
    pub holder: Option<KeyHolder>,
}

/// A superseded key left active because it was used recently.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InUse {
    /// The key.
    pub access_key_id: String,
    /// When it was last used (RFC 3339).
    pub last_used: String,
    /// The service it was last used with, where the provider says.
    pub service: Option<String>,
}

/// What a cleanup run did, secret by secret.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CleanupReport {
    /// One entry per secret.
    pub secrets: Vec<SecretCleanup>,
    /// Secrets a sweep had no time left for (the next run takes them).
    #[serde(skip_serializing_if = "is_zero")]
    pub not_reached: usize,
    /// A dry run (`REKEY_DRY_RUN`): the keys listed as deactivated and
    /// deleted, and the versions abandoned, are what cleanup would have
    /// done; nothing was changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The tags cleanup writes and removes at the end of a run.
#[derive(Default)]
struct RecordChanges {
    tags: Vec<(String, String)>,
    untags: Vec<String>,
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// Cleans one managed secret (invariants current-key-kept,
    /// retire-by-record and liveness: a rotation in progress does not
    /// stop it).
    pub async fn cleanup(&self, secret_id: &str) -> Result<SecretCleanup> {
        let info = self.vault.describe(secret_id).await?;
        self.record_pause(&info).await;
        check_managed(secret_id, &info)?;
        let (current_read, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        self.check_owner(secret_id, &info, &current)?;
        self.check_admin_claim(secret_id, &info, &current).await?;
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, &current).await?;
        provider.ensure_managed(user, &info.arn).await?;
        // Read before the key list, so a key it holds is in that list.
        let pending = self.pending_rotation(secret_id, &info, &current).await?;
        let previous = self.previous_key(secret_id, &info, &current).await?;
        let keys = provider.list_keys(user).await?;
        let records = load_records(&info);
        let now = self.clock.now();
        // Invariant retire-by-record (the clocks): anchored on the key,
        // which an edit that keeps it does not renew.
        let key_since = records::key_since(&keys, current.key_id(), current_read.created);
        let mut report = SecretCleanup {
            secret_id: secret_id.to_owned(),
            status: "cleaned",
            current_since: Some(timestamp(key_since)),
            holder: Some(KeyHolder::of(&info, &current)),
            ..Default::default()
        };
        let pending_key = match &pending {
            Some(p) => {
                self.leave_or_abandon(secret_id, p, &keys, now, &mut report)
                    .await?
            }
            None => None,
        };
        let pending_token = pending
            .as_ref()
            .filter(|_| report.abandoned.is_none())
            .map(|p| p.version.as_str());
        let plan = plan::plan_cleanup(&CleanupInput {
            keys: &keys,
            current: current.key_id(),
            pending: pending_key,
            pending_token,
            previous: previous.as_deref(),
            records: &records,
            floor: key_since,
            now,
            deactivate_after: self.grace_of(&info.name),
            delete_after: self.config.delete_after,
        });
        let mut changes = RecordChanges::default();
        self.note_check(
            &info,
            &current_read,
            current.key_id(),
            &keys,
            now,
            &mut changes,
        );
        for action in plan.actions {
            self.carry_out(&provider, user, action, now, &mut changes, &mut report)
                .await?;
        }
        self.write_records(secret_id, &info, changes, &report.deleted)
            .await?;
        report.waiting = plan.waiting;
        Ok(report)
    }

    /// A paused secret refused by the full check still gets its
    /// `rekey:paused-since` record when it has none (a tag set by hand,
    /// seen here first), so its pause is counted from now (invariant
    /// liveness: nothing goes silent). Not written, it is tried again by
    /// the next sweep; the refusal stands either way.
    async fn record_pause(&self, info: &SecretInfo) {
        let now = self.clock.now();
        let pause = triage::pause(info, now, self.config.paused_alert_after);
        if let Some(PauseRecord::Write(since)) = triage::pause_record(info, pause.as_ref()) {
            let tag = (TAG_PAUSED_SINCE.to_owned(), timestamp(since));
            if let Err(e) = self.vault.tag(&info.arn, &[tag]).await {
                warn!(error_type = e.kind(), error = %e, "the record {TAG_PAUSED_SINCE} could not be written");
            }
        }
    }

    /// The full check's own records: when it ran (`rekey:checked`), and
    /// the `rekey:current` record unless it names this version, its key
    /// and since when that key exists (AWSCURRENT moved by an edit or by
    /// hand, a secret enrolled before finish wrote it, or a time set by
    /// hand): the sweep can then decide from the records again, as
    /// rekey-create does, from the key's creation. After an edit that kept
    /// the key, only the version changes: the time stays the key's
    /// (`CurrentRecord::after_check`; invariant retire-by-record, the
    /// clocks), so the rotation comes due on schedule.
    fn note_check(
        &self,
        info: &SecretInfo,
        version: &SecretVersion,
        key_id: Option<&str>,
        keys: &[AccessKey],
        now: SystemTime,
        changes: &mut RecordChanges,
    ) {
        changes.tags.push((CHECKED.to_owned(), timestamp(now)));
        // Not paused: a pause record left by a `rekey:paused` tag removed
        // by hand is over (`write_records` keeps only tags that exist).
        changes.untags.push(TAG_PAUSED_SINCE.to_owned());
        let Some(key_id) = key_id else {
            return; // no key yet: the records cannot vouch for it
        };
        let recorded = CurrentRecord::load(info);
        let record = CurrentRecord::after_check(
            recorded.as_ref(),
            &version.version_id,
            key_id,
            keys,
            version.created,
        );
        // Compared as written (to the second).
        if recorded.map(|r| r.value()) != Some(record.value()) {
            changes.tags.push((CURRENT.to_owned(), record.value()));
        }
    }

    /// The rotation in progress, if AWSPENDING is on a version other than
    /// AWSCURRENT's. It does not stop cleanup (a rotation blocked at the
    /// key limit waits for it): its key is left alone.
    async fn pending_rotation(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        current: &ManagedSecret,
    ) -> Result<Option<InProgress>> {
        match info.version_with(AWSPENDING) {
            Some(v) if Some(v) != info.version_with(AWSCURRENT) => {
                Ok(Some(self.in_progress(secret_id, info, v, current).await?))
            }
            _ => Ok(None),
        }
    }

    /// The key of the rotation in progress, to be left alone; or, when it
    /// can never finish, none: AWSPENDING is taken off its version
    /// (invariant liveness) and the report says so.
    async fn leave_or_abandon<'p>(
        &self,
        secret_id: &str,
        pending: &'p InProgress,
        keys: &[AccessKey],
        now: SystemTime,
        report: &mut SecretCleanup,
    ) -> Result<Option<&'p str>> {
        match plan::dead_pending(pending.facts(), keys, now) {
            Some(reason) => {
                self.abandon(secret_id, pending, reason).await?;
                report.abandoned = Some(pending.version.clone());
                Ok(None)
            }
            None => Ok(pending.key.as_deref()),
        }
    }

    /// Carries out one action of the plan; records go to `changes`, and
    /// what was done to `report`.
    async fn carry_out(
        &self,
        provider: &Keys<P>,
        user: &str,
        action: Action,
        now: SystemTime,
        changes: &mut RecordChanges,
        report: &mut SecretCleanup,
    ) -> Result<()> {
        let stamp = || timestamp(now);
        match action {
            Action::RecordSuperseded(key) => {
                changes.tags.push((record_tag(SUPERSEDED, &key), stamp()))
            }
            Action::RecordInactive(key) => changes.tags.push((record_tag(INACTIVE, &key), stamp())),
            Action::Deactivate(key) => {
                if let Some(in_use) = self.still_in_use(provider, user, &key, now).await? {
                    report.in_use.push(in_use);
                    return Ok(());
                }
                provider.deactivate_key(user, &key).await?;
                info!(key_id = key, user, "deactivated the superseded key");
                changes.tags.push((record_tag(INACTIVE, &key), stamp()));
                report.deactivated.push(key);
            }
            Action::Delete(key) => {
                provider.delete_key(user, &key).await?;
                info!(key_id = key, user, "deleted the inactive key");
                changes
                    .untags
                    .extend(records::ALL.map(|p| record_tag(p, &key)));
                report.deleted.push(key);
            }
            Action::Forget(key) => {
                changes
                    .untags
                    .extend(records::ALL.map(|p| record_tag(p, &key)));
            }
            Action::ForgetTimers(key) => {
                changes
                    .untags
                    .extend(records::TIMERS.map(|p| record_tag(p, &key)));
            }
        }
        Ok(())
    }

    /// When the superseded `key` was used within `REKEY_IDLE_BEFORE_DEACTIVATE`,
    /// it stays active and the next run tries again: what the report says.
    async fn still_in_use(
        &self,
        provider: &Keys<P>,
        user: &str,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<InUse>> {
        let last = provider.last_used(user, key).await?;
        if !plan::recently_used(&last, now, self.config.idle_before_deactivate) {
            return Ok(None);
        }
        let LastUsed::At { when, service } = last else {
            unreachable!()
        };
        warn!(
            key_id = key,
            last_used = timestamp(when),
            service = service.as_deref().unwrap_or("unknown"),
            "the superseded key is still in use; it stays active and the next run tries again"
        );
        Ok(Some(InUse {
            access_key_id: key.to_owned(),
            last_used: timestamp(when),
            service,
        }))
    }

    /// Writes the new records and removes the dropped ones: only tags the
    /// secret has are removed, and a deleted key gets no `inactive` record.
    async fn write_records(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        mut changes: RecordChanges,
        deleted: &[String],
    ) -> Result<()> {
        changes.untags.retain(|t| info.tags.contains_key(t));
        changes
            .tags
            .retain(|(t, _)| !deleted.iter().any(|k| *t == record_tag(INACTIVE, k)));
        self.vault.tag(secret_id, &changes.tags).await?;
        self.vault.untag(secret_id, &changes.untags).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RetirementStep;

    #[test]
    fn the_report_keeps_its_field_names() {
        let report = CleanupReport {
            secrets: vec![SecretCleanup {
                secret_id: "s".into(),
                status: "cleaned",
                reason: Some("r".into()),
                error_type: Some("E"),
                current_since: Some("2026-01-01T00:00:00Z".into()),
                deactivated: vec!["A".into()],
                deleted: vec!["B".into()],
                in_use: vec![InUse {
                    access_key_id: "C".into(),
                    last_used: "2026-01-02T00:00:00Z".into(),
                    service: None,
                }],
                waiting: vec![Scheduled {
                    key_id: "D".into(),
                    next: RetirementStep::Deletion,
                    due: humantime::parse_rfc3339("2026-01-03T00:00:00Z").unwrap(),
                }],
                abandoned: Some("T".into()),
                holder: Some(KeyHolder::default()),
            }],
            not_reached: 0,
            dry_run: false,
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            concat!(
                r#"{"Secrets":[{"SecretId":"s","Status":"cleaned","Reason":"r","ErrorType":"E","#,
                r#""CurrentSince":"2026-01-01T00:00:00Z","Deactivated":["A"],"Deleted":["B"],"#,
                r#""InUse":[{"AccessKeyId":"C","LastUsed":"2026-01-02T00:00:00Z","Service":null}],"#,
                r#""Waiting":[{"AccessKeyId":"D","Next":"deletion","Due":"2026-01-03T00:00:00Z"}],"#,
                r#""Abandoned":"T"}]}"#
            )
        );
    }
}
