//! rekey-cleanup: deactivate superseded keys after their grace period and
//! delete inactive keys after theirs. When each period started is kept in
//! the secret's tags (`rekey:superseded:<key id>`, `rekey:inactive:<key id>`)
//! so it survives crashes; a missing record starts its clock now.

use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn, Instrument};

use super::Rekey;
use crate::error::{Error, Result};
use crate::model::{LastUsed, AWSCURRENT, AWSPENDING, TAG_MANAGED, TAG_PAUSED};
use crate::plan::{self, timestamp, Action, CleanupInput, Due, Records};
use crate::ports::{Clock, KeyApi, Providers, SecretInfo, Select, Vault};

pub(crate) const CREATED: &str = "rekey:created:";
pub(crate) const SUPERSEDED: &str = "rekey:superseded:";
pub(crate) const INACTIVE: &str = "rekey:inactive:";
/// Secrets cleaned at once during a sweep.
const SWEEP_CONCURRENCY: usize = 4;

pub(crate) fn record_tag(prefix: &str, key_id: &str) -> String {
    format!("{prefix}{key_id}")
}

pub(crate) fn load_records(info: &SecretInfo) -> Records {
    let mut records = Records::default();
    for (tag, value) in &info.tags {
        let Ok(when) = humantime::parse_rfc3339(value) else {
            continue;
        };
        if let Some(id) = tag.strip_prefix(CREATED) {
            records.created.insert(id.to_owned(), when);
        } else if let Some(id) = tag.strip_prefix(SUPERSEDED) {
            records.superseded.insert(id.to_owned(), when);
        } else if let Some(id) = tag.strip_prefix(INACTIVE) {
            records.inactive.insert(id.to_owned(), when);
        }
    }
    records
}

/// What cleanup did to one secret.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SecretCleanup {
    pub secret_id: String,
    /// `cleaned` or `skipped`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// When the AWSCURRENT version was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_since: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deactivated: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Superseded keys left active because they are still being used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_use: Vec<InUse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Pending>,
    /// The version of a rotation that could never finish, whose AWSPENDING
    /// label cleanup took off (its token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InUse {
    pub access_key_id: String,
    pub last_used: String,
    pub service: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Pending {
    pub access_key_id: String,
    /// `deactivation` or `deletion`.
    pub next: &'static str,
    pub due: String,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CleanupReport {
    pub secrets: Vec<SecretCleanup>,
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// Cleans every managed secret. A secret that cannot be cleaned is
    /// skipped and reported; the sweep itself only fails if the secrets
    /// cannot be listed.
    pub async fn cleanup_all(&self) -> Result<CleanupReport> {
        let ids = self.vault.list_managed().await?;
        let secrets = futures::stream::iter(ids)
            .map(|id| {
                let span = tracing::info_span!("secret", secret_id = %id);
                async move {
                    match self.cleanup(&id).await {
                        Ok(done) => done,
                        Err(e) => {
                            warn!(error_type = e.kind(), error = %e, "skipped secret");
                            SecretCleanup {
                                secret_id: id,
                                status: "skipped",
                                reason: Some(e.to_string()),
                                error_type: Some(e.kind()),
                                ..Default::default()
                            }
                        }
                    }
                }
                .instrument(span)
            })
            .buffered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        Ok(CleanupReport { secrets })
    }

    /// Cleans one managed secret.
    pub async fn cleanup(&self, secret_id: &str) -> Result<SecretCleanup> {
        let info = self.vault.describe(secret_id).await?;
        let id = || secret_id.to_owned();
        if !info.tag_is_true(TAG_MANAGED) {
            return Err(Error::SecretNotManaged { secret_id: id() });
        }
        if info.tag_is_true(TAG_PAUSED) {
            return Err(Error::SecretPaused { secret_id: id() });
        }
        let current_version = info.version_with(AWSCURRENT);
        let (current_read, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        self.check_owner(secret_id, &info, &current)?;
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, &current).await?;
        provider.ensure_managed(user, &info.arn).await?;
        // A rotation in progress does not stop cleanup (a rotation blocked
        // at the key limit waits for it): its key is left alone. Read before
        // the key list, so a key it holds is in that list.
        let pending = match info.version_with(AWSPENDING) {
            Some(v) if Some(v) != current_version => {
                Some(self.in_progress(secret_id, &info, v, &current).await?)
            }
            _ => None,
        };
        let previous = self.previous_key(secret_id, &info, &current).await?;
        let keys = provider.list_keys(user).await?;
        let records = load_records(&info);
        let now = self.clock.now();
        let mut report = SecretCleanup {
            secret_id: id(),
            status: "cleaned",
            current_since: Some(timestamp(current_read.created)),
            ..Default::default()
        };
        let mut pending_key = None;
        if let Some(p) = &pending {
            match plan::dead_pending(p.facts(), &keys, now) {
                Some(reason) => {
                    self.abandon(secret_id, p, reason).await?;
                    report.abandoned = Some(p.version.clone());
                }
                None => pending_key = p.key.as_deref(),
            }
        }
        let plan = plan::plan_cleanup(&CleanupInput {
            keys: &keys,
            current: current.key_id(),
            pending: pending_key,
            previous: previous.as_deref(),
            records: &records,
            floor: current_read.created,
            now,
            deactivate_after: self.config.deactivate_after,
            delete_after: self.config.delete_after,
        });
        let stamp = timestamp(now);
        let mut tags = Vec::new();
        let mut untags = Vec::new();
        for action in plan.actions {
            match action {
                Action::RecordSuperseded(key) => {
                    tags.push((record_tag(SUPERSEDED, &key), stamp.clone()))
                }
                Action::RecordInactive(key) => {
                    tags.push((record_tag(INACTIVE, &key), stamp.clone()))
                }
                Action::Deactivate(key) => {
                    let last = provider.last_used(user, &key).await?;
                    if plan::recently_used(&last, now, self.config.idle_before_deactivate) {
                        let LastUsed::At { when, service } = last else {
                            unreachable!()
                        };
                        warn!(
                            key_id = key,
                            last_used = timestamp(when),
                            service = service.as_deref().unwrap_or("unknown"),
                            "the superseded key is still in use; it stays active and the next run tries again"
                        );
                        report.in_use.push(InUse {
                            access_key_id: key,
                            last_used: timestamp(when),
                            service,
                        });
                        continue;
                    }
                    provider.deactivate_key(user, &key).await?;
                    info!(key_id = key, user, "deactivated the superseded key");
                    tags.push((record_tag(INACTIVE, &key), stamp.clone()));
                    report.deactivated.push(key);
                }
                Action::Delete(key) => {
                    provider.delete_key(user, &key).await?;
                    info!(key_id = key, user, "deleted the inactive key");
                    untags.extend([CREATED, SUPERSEDED, INACTIVE].map(|p| record_tag(p, &key)));
                    report.deleted.push(key);
                }
                Action::Forget(key) => {
                    untags.extend([CREATED, SUPERSEDED, INACTIVE].map(|p| record_tag(p, &key)));
                }
                Action::ForgetTimers(key) => {
                    untags.extend([SUPERSEDED, INACTIVE].map(|p| record_tag(p, &key)));
                }
            }
        }
        untags.retain(|t| info.tags.contains_key(t));
        tags.retain(|(t, _)| !report.deleted.iter().any(|k| *t == record_tag(INACTIVE, k)));
        self.vault.tag(secret_id, &tags).await?;
        self.vault.untag(secret_id, &untags).await?;
        report.waiting = plan
            .waiting
            .into_iter()
            .map(|w| Pending {
                access_key_id: w.key_id,
                next: match w.due {
                    Due::Deactivation => "deactivation",
                    Due::Deletion => "deletion",
                },
                due: timestamp(w.at),
            })
            .collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                waiting: vec![Pending {
                    access_key_id: "D".into(),
                    next: "deletion",
                    due: "2026-01-03T00:00:00Z".into(),
                }],
                abandoned: Some("T".into()),
            }],
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
