//! createSecret / rekey-create: make room under the key limit, create the
//! new key, and store it as the token's AWSPENDING version.

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Driver, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::model::AccessKey;
use crate::model::{ManagedSecret, AWSCURRENT};
use crate::plan::{self, KeyFacts, KeyRole, PendingFacts, RoomContext};
use crate::ports::SecretInfo;
use crate::ports::{Clock, KeyApi, Providers, Select, Vault};
use crate::steps::cleanup::{load_records, record_tag, CREATED};

/// What createSecret found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new key was created and stored as AWSPENDING, after deleting
    /// the keys in `removed` (orphans, or an inactive key at the limit).
    New {
        key_id: String,
        removed: Vec<String>,
    },
    /// The token's version already holds its new key.
    AlreadyPending { key_id: String },
    /// The token's version is already AWSCURRENT.
    AlreadyCurrent,
    /// The AWSCURRENT version is younger than the rotation period.
    NotDue { current_since: SystemTime },
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    pub async fn create(&self, secret_id: &str, token: &str, driver: Driver) -> Result<Created> {
        self.create_if_due(secret_id, token, driver, None).await
    }

    /// Like [`Rekey::create`], but a new rotation starts only if the
    /// AWSCURRENT version is at least `period` old.
    pub async fn create_if_due(
        &self,
        secret_id: &str,
        token: &str,
        driver: Driver,
        period: Option<Duration>,
    ) -> Result<Created> {
        let (info, state) = self.guard(secret_id, token, driver).await?;
        if state == TokenState::Current {
            return Ok(Created::AlreadyCurrent);
        }
        let (current_version, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        if let (TokenState::Absent, Some(period)) = (state, period) {
            if !plan::is_due(current_version.created, period, self.clock.now()) {
                return Ok(Created::NotDue {
                    current_since: current_version.created,
                });
            }
        }

        self.check_owner(secret_id, &info, &current)?;
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, &current).await?;
        provider.ensure_managed(user, &info.arn).await?;
        // Read before the key list, so a key it holds is in that list.
        let pending = match state {
            TokenState::Pending => Some(self.in_progress(secret_id, &info, token, &current).await?),
            _ => None,
        };
        let keys = provider.list_keys(user).await?;
        if let Some(p) = pending.filter(|p| !matches!(p.facts(), PendingFacts::Empty)) {
            // A version that holds a key is immutable: resume it if it can
            // still finish, else replace it (a new token).
            if let Some(reason) = plan::dead_pending(p.facts(), &keys, self.clock.now()) {
                self.abandon(secret_id, &p, reason).await?;
                return Err(Error::RotationAbandoned {
                    secret_id: secret_id.to_owned(),
                    token: token.to_owned(),
                    reason: reason.to_owned(),
                });
            }
            let key_id = p.key.unwrap_or_default();
            info!(key_id, "the token's version already holds its new key");
            return Ok(Created::AlreadyPending { key_id });
        }
        let removed = self
            .make_room(
                &provider,
                secret_id,
                &info,
                &current,
                current_version.created,
                keys,
            )
            .await?;

        let new_key = provider.create_key(user).await?;
        let key_id = new_key.access_key_id.clone();
        info!(key_id, user, "created a new access key");
        // The record first: whatever happens to the key from here on (not
        // stored, abandoned, relabelled), cleanup knows it is rekey's.
        if let Err(err) = self.record_created(secret_id, &key_id).await {
            warn!(key_id, user, error = %err, "could not record the new key; deleting it");
            if let Err(e) = provider.delete_key(user, &key_id).await {
                warn!(key_id, user, error = %e, "could not delete the unrecorded key; the next attempt reclaims it");
            }
            return Err(err);
        }
        let next = current.with_credential(new_key);
        match self
            .vault
            .put_pending(secret_id, token, &next.to_secret_string())
            .await
        {
            Ok(()) => Ok(Created::New { key_id, removed }),
            Err(err) => {
                // The write may have taken effect with its answer lost:
                // delete the key only if the version is known not to hold
                // it. When unsure, leave it: an orphan is reclaimed by the
                // next attempt, and the record has cleanup retire it.
                let stored = self.in_progress(secret_id, &info, token, &current).await;
                match stored.map(|p| p.key) {
                    Ok(Some(stored)) if stored == key_id => {
                        return Ok(Created::New { key_id, removed });
                    }
                    Ok(_) => {
                        warn!(key_id, user, error = %err, "storing the new key failed; deleting it");
                        if let Err(e) = provider.delete_key(user, &key_id).await {
                            warn!(key_id, user, error = %e, "could not delete the unstored key; the next attempt reclaims it");
                        }
                    }
                    Err(e) => {
                        warn!(key_id, user, error = %err, check = %e, "storing the new key failed and its state is unknown; the next attempt reclaims the key if it was not stored");
                    }
                }
                Err(err)
            }
        }
    }

    /// Deletes what must go before a new key is created: every orphan and,
    /// at the limit, the oldest inactive key (`plan::make_room` decides).
    /// Returns the deleted key ids.
    async fn make_room(
        &self,
        provider: &P::KeyApi,
        secret_id: &str,
        info: &SecretInfo,
        current: &ManagedSecret,
        current_created: SystemTime,
        keys: Vec<AccessKey>,
    ) -> Result<Vec<String>> {
        let user = current.user_name.as_str();
        let mut facts: Vec<KeyFacts> = keys
            .into_iter()
            .map(|key| KeyFacts {
                role: if Some(key.id.as_str()) == current.key_id() {
                    KeyRole::Current
                } else {
                    KeyRole::Unreferenced
                },
                key,
                last_used: None,
            })
            .collect();
        let limit = provider.key_limit();
        let candidates = facts
            .iter()
            .any(|f| plan::is_orphan_candidate(f, current_created));
        if facts.len() < limit && !candidates {
            return Ok(Vec::new());
        }
        // More is needed: the superseded keys (the previous version's and
        // those rekey recorded), their grace periods, and the last use of
        // orphan candidates.
        let previous_key = self.previous_key(secret_id, info, current).await?;
        let records = load_records(info);
        for f in &mut facts {
            if f.role == KeyRole::Unreferenced && previous_key.as_deref() == Some(&f.key.id) {
                f.role = KeyRole::Previous;
            }
            if plan::is_orphan_candidate(f, current_created) {
                f.last_used = Some(provider.last_used(user, &f.key.id).await?);
            }
            // A key known by rekey's records that is not an orphan (used, or
            // older than the current version) was superseded or abandoned:
            // it waits for cleanup like any superseded key. An orphan (never
            // stored, never used) is reclaimed whatever its records say, so
            // a token's retry never leaves a second key of its own.
            if f.role == KeyRole::Unreferenced
                && (records.superseded.contains_key(&f.key.id) || records.made_by_rekey(&f.key))
                && !plan::is_orphan(f, current_created)
            {
                f.role = KeyRole::Previous;
            }
        }
        let grace_ends = facts
            .iter()
            .filter_map(|f| {
                let since = *records.superseded.get(&f.key.id)?;
                let since = plan::trusted_since(since, current_created);
                Some((f.key.id.clone(), since + self.config.deactivate_after))
            })
            .collect();
        let ctx = RoomContext {
            user,
            limit,
            current_version_created: current_created,
            grace_ends,
        };
        let room = plan::make_room(&facts, &ctx)
            .map_err(|blocked| Error::KeyLimitReached(blocked.to_string()))?;
        let mut removed = Vec::new();
        for id in room.orphans {
            info!(
                key_id = id,
                user, "reclaiming an orphan key left by an interrupted attempt"
            );
            provider.delete_key(user, &id).await?;
            removed.push(id);
        }
        if let Some(id) = room.inactive {
            info!(
                key_id = id,
                user, "deleting the oldest inactive key to make room"
            );
            provider.delete_key(user, &id).await?;
            removed.push(id);
        }
        Ok(removed)
    }

    /// Records that rekey made `key_id` for this secret, so that it is
    /// retired even if it is never stored, never becomes current (an
    /// abandoned rotation) or leaves the labels (a rollback, an edit).
    async fn record_created(&self, secret_id: &str, key_id: &str) -> Result<()> {
        let tag = record_tag(CREATED, key_id);
        let now = plan::timestamp(self.clock.now());
        self.vault.tag(secret_id, &[(tag, now)]).await
    }
}
