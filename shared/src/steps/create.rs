//! createSecret / rekey-create: make room under the key limit, create the
//! new key, and store it as the token's AWSPENDING version.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Driver, InProgress, Keys, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::model::{AccessKey, Credential, KeyStatus, LastUsed, ManagedSecret, AWSCURRENT};
use crate::plan::{self, KeyFacts, KeyRole, PendingFacts, RoleFacts, Room, RoomContext};
use crate::ports::{Clock, KeyApi, Providers, SecretInfo, Select, Vault};
use crate::records::{
    self, created_value, load_records, record_tag, trusted_since, Records, CREATED,
};

/// The token `preview_rotation` decides with (never written: the
/// preview runs dry).
const PREVIEW_TOKEN: &str = "rekey-plan-preview";

/// What createSecret found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new key was created and stored as AWSPENDING, after deleting
    /// the keys in `removed` (orphans, or an inactive key at the limit).
    New {
        /// The new key.
        key_id: String,
        /// The keys deleted to make room.
        removed: Vec<String>,
    },
    /// The token's version already holds its new key.
    AlreadyPending {
        /// The key it holds.
        key_id: String,
    },
    /// The token's version is already AWSCURRENT.
    AlreadyCurrent,
    /// The AWSCURRENT key is younger than the rotation period.
    NotDue {
        /// Since when the AWSCURRENT key exists (`records::key_since`).
        current_since: SystemTime,
    },
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// createSecret: make a new key for the token, or find the one it made.
    pub async fn create(&self, secret_id: &str, token: &str, driver: Driver) -> Result<Created> {
        self.create_if_due(secret_id, token, driver, None).await
    }

    /// Like [`Rekey::create`], but a new rotation starts only if the
    /// AWSCURRENT key is at least `period` old (`records::key_since`: an
    /// edit that keeps the key does not put the rotation off).
    pub async fn create_if_due(
        &self,
        secret_id: &str,
        token: &str,
        driver: Driver,
        period: Option<Duration>,
    ) -> Result<Created> {
        let (info, state) = self.guard(secret_id, token, driver).await?;
        self.create_in(secret_id, token, &info, state, period).await
    }

    /// What a rotation started now would do, or why none would start:
    /// `create` itself decides, in a dry run (so it changes nothing), on a
    /// token of its own, whatever the secret's driver. `Err(DryRun)` names
    /// the keys it would delete and the key it would create; `Ok(NotDue)`
    /// says since when AWSCURRENT's key exists. Refused unless the steps
    /// run dry (`Rekey::new` with `dry_run`): `rekey plan` and `rekey
    /// status` use it.
    pub async fn preview_rotation(
        &self,
        secret_id: &str,
        period: Option<Duration>,
    ) -> Result<Created> {
        if !self.config.dry_run {
            return Err(Error::Internal {
                operation: "preview a rotation",
                reason: "the steps must run dry to preview".into(),
            });
        }
        let info = self.vault.describe(secret_id).await?;
        super::check_managed(secret_id, &info)?;
        let state = super::token_state(secret_id, &info, PREVIEW_TOKEN, Driver::Pipeline)?;
        self.create_in(secret_id, PREVIEW_TOKEN, &info, state, period)
            .await
    }

    /// create after its guard: `state` is where `token` stands in `info`.
    async fn create_in(
        &self,
        secret_id: &str,
        token: &str,
        info: &SecretInfo,
        state: TokenState,
        period: Option<Duration>,
    ) -> Result<Created> {
        if state == TokenState::Current {
            return Ok(Created::AlreadyCurrent);
        }
        let (current_version, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        self.check_owner(secret_id, info, &current)?;
        self.check_admin_claim(secret_id, info, &current).await?;
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, &current).await?;
        provider.ensure_managed(user, &info.arn).await?;
        // Read before the key list, so a key it holds is in that list.
        let pending = match state {
            TokenState::Pending => Some(self.in_progress(secret_id, info, token, &current).await?),
            _ => None,
        };
        let keys = provider.list_keys(user).await?;
        // Invariant retire-by-record (the clocks): due when the key is
        // `period` old, whatever edits made newer versions since.
        let key_since = records::key_since(&keys, current.key_id(), current_version.created);
        if let (TokenState::Absent, Some(period)) = (state, period) {
            if !plan::is_due(key_since, period, self.clock.now()) {
                return Ok(Created::NotDue {
                    current_since: key_since,
                });
            }
        }
        if let Some(p) = pending.filter(|p| !matches!(p.facts(), PendingFacts::Empty)) {
            return self.resume_or_abandon(secret_id, token, p, &keys).await;
        }
        // Before anything changes for a new key: the admin key that signs
        // is not about to be replaced.
        self.check_admin_settled(secret_id, &current).await?;
        let facts = SecretFacts {
            secret_id,
            info,
            current: &current,
            current_created: current_version.created,
            key_since,
        };
        let (keys, mut removed) = self
            .reclaim_own_keys(&provider, &facts, token, keys)
            .await?;
        removed.extend(self.make_room(&provider, &facts, keys).await?);
        let new_key = self
            .create_recorded_key(&provider, secret_id, user, token)
            .await?;
        let key_id = new_key.access_key_id.clone();
        self.store_new_key(&provider, &facts, token, new_key)
            .await?;
        Ok(Created::New { key_id, removed })
    }

    /// A version that holds a key is immutable (invariant
    /// one-key-per-token): resume it if it can still finish, else take
    /// AWSPENDING off it so the next rotation comes with a new token
    /// (invariant liveness).
    async fn resume_or_abandon(
        &self,
        secret_id: &str,
        token: &str,
        pending: InProgress,
        keys: &[AccessKey],
    ) -> Result<Created> {
        if let Some(reason) = plan::dead_pending(pending.facts(), keys, self.clock.now()) {
            if self.config.dry_run {
                return Err(Error::DryRun {
                    would: format!(
                        "take AWSPENDING off version {} ({reason}), and the next rotation would start anew",
                        pending.version
                    ),
                });
            }
            self.abandon(secret_id, &pending, reason).await?;
            return Err(Error::RotationAbandoned {
                secret_id: secret_id.to_owned(),
                token: token.to_owned(),
                reason: reason.to_owned(),
            });
        }
        let key_id = pending.key.unwrap_or_default();
        info!(key_id, "the token's version already holds its new key");
        Ok(Created::AlreadyPending { key_id })
    }

    /// Deletes the keys an earlier attempt of this very token made and
    /// never stored (invariant one-key-per-token, even after an edit made
    /// them older than AWSCURRENT, where they no longer look like
    /// orphans): its `created` record names the token and was written
    /// when the key was made (`Records::made_by_rekey`), the token's
    /// version holds no key (else the resume above answered), no label or
    /// `superseded` record makes it a key someone was given, and it was
    /// never used (a tag is no proof: a key in use is never deleted on
    /// a record's word). Returns the keys left and the ones deleted.
    async fn reclaim_own_keys(
        &self,
        provider: &Keys<P>,
        secret: &SecretFacts<'_>,
        token: &str,
        keys: Vec<AccessKey>,
    ) -> Result<(Vec<AccessKey>, Vec<String>)> {
        let records = load_records(secret.info);
        let user = secret.current.user_name.as_str();
        let current = secret.current.key_id();
        let (mut left, mut removed) = (Vec::with_capacity(keys.len()), Vec::new());
        for key in keys {
            let own = records.created_for.get(&key.id).is_some_and(|t| t == token)
                && records.made_by_rekey(&key)
                && !records.superseded.contains_key(&key.id)
                && key.status == KeyStatus::Active
                && plan::label_role(&key, current, None) == KeyRole::Unreferenced
                && matches!(
                    provider.last_used(user, &key.id).await?,
                    LastUsed::Never | LastUsed::Unknown
                );
            if !own {
                left.push(key);
                continue;
            }
            info!(
                key_id = key.id,
                user, "reclaiming the key an earlier attempt of this token made and never stored"
            );
            provider.delete_key(user, &key.id).await?;
            removed.push(key.id);
        }
        Ok((left, removed))
    }

    /// Deletes what must go before a new key is created: every orphan and,
    /// at the limit, the oldest inactive key (`plan::make_room` decides;
    /// invariant key-limit). Returns the deleted key ids.
    async fn make_room(
        &self,
        provider: &Keys<P>,
        secret: &SecretFacts<'_>,
        keys: Vec<AccessKey>,
    ) -> Result<Vec<String>> {
        let user = secret.current.user_name.as_str();
        let current_key = secret.current.key_id();
        let limit = provider.key_limit();
        if !plan::room_may_be_needed(&keys, current_key, limit, secret.current_created) {
            return Ok(Vec::new());
        }
        // More is needed: the superseded keys (the previous version's and
        // those rekey recorded), their grace periods, and the last use of
        // orphan candidates.
        let previous = self
            .previous_key(secret.secret_id, secret.info, secret.current)
            .await?;
        let records = load_records(secret.info);
        let roles = RoleFacts {
            current: current_key,
            previous: previous.as_deref(),
            records: &records,
            current_version_created: secret.current_created,
            now: self.clock.now(),
        };
        let facts = self.key_facts(provider, user, keys, &roles).await?;
        let ctx = RoomContext {
            user,
            limit,
            current_version_created: secret.current_created,
            grace_ends: grace_ends(
                &facts,
                &records,
                secret.key_since,
                self.grace_of(&secret.info.name),
            ),
        };
        let room = plan::make_room(&facts, &ctx)
            .map_err(|blocked| Error::KeyLimitReached(blocked.to_string()))?;
        self.delete_for_room(provider, user, room).await
    }

    /// Each key with its role (`plan::key_role`), and the last use of
    /// those that may be orphans.
    async fn key_facts(
        &self,
        provider: &Keys<P>,
        user: &str,
        keys: Vec<AccessKey>,
        roles: &RoleFacts<'_>,
    ) -> Result<Vec<KeyFacts>> {
        let mut facts = Vec::with_capacity(keys.len());
        for key in keys {
            let mut f = KeyFacts {
                role: plan::label_role(&key, roles.current, roles.previous),
                key,
                last_used: None,
            };
            if plan::is_orphan_candidate(&f, roles.current_version_created) {
                f.last_used = Some(provider.last_used(user, &f.key.id).await?);
            }
            f.role = plan::key_role(&f.key, f.last_used.as_ref(), roles);
            facts.push(f);
        }
        Ok(facts)
    }

    /// Deletes the keys `room` names: the orphans, then the inactive key.
    async fn delete_for_room(
        &self,
        provider: &Keys<P>,
        user: &str,
        room: Room,
    ) -> Result<Vec<String>> {
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

    /// Creates the new key (never retried: invariant one-key-per-token)
    /// and records it. The record
    /// first: whatever happens to the key from here on (not stored,
    /// abandoned, relabelled), cleanup knows it is rekey's (invariant
    /// retire-by-record). A key that cannot be recorded is deleted.
    async fn create_recorded_key(
        &self,
        provider: &Keys<P>,
        secret_id: &str,
        user: &str,
        token: &str,
    ) -> Result<Credential> {
        let new_key = provider.create_key(user).await?;
        let key_id = new_key.access_key_id.as_str();
        info!(key_id, user, "created a new access key");
        if let Err(err) = self.record_created(secret_id, key_id, token).await {
            warn!(key_id, user, error = %err, "could not record the new key; deleting it");
            if let Err(e) = provider.delete_key(user, key_id).await {
                warn!(key_id, user, error = %e, "could not delete the unrecorded key; the next attempt reclaims it");
            }
            return Err(err);
        }
        Ok(new_key)
    }

    /// Stores `new_key` as the token's AWSPENDING version. The write may
    /// have taken effect with its answer lost: on failure, the key is
    /// deleted only if the version is known not to hold it. When unsure,
    /// it is left: an orphan is reclaimed by the next attempt, and the
    /// record has cleanup retire it.
    async fn store_new_key(
        &self,
        provider: &Keys<P>,
        secret: &SecretFacts<'_>,
        token: &str,
        new_key: Credential,
    ) -> Result<()> {
        let key_id = new_key.access_key_id.clone();
        let next = secret.current.with_credential(new_key);
        let Err(err) = self
            .vault
            .put_pending(secret.secret_id, token, &next.to_secret_string())
            .await
        else {
            return Ok(());
        };
        let user = secret.current.user_name.as_str();
        let stored = self
            .in_progress(secret.secret_id, secret.info, token, secret.current)
            .await;
        match stored.map(|p| p.key) {
            Ok(Some(stored)) if stored == key_id => return Ok(()),
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

    /// Records that rekey made `key_id` for this secret, so that it is
    /// retired even if it is never stored, never becomes current (an
    /// abandoned rotation) or leaves the labels (a rollback, an edit).
    async fn record_created(&self, secret_id: &str, key_id: &str, token: &str) -> Result<()> {
        let tag = record_tag(CREATED, key_id);
        let value = created_value(self.clock.now(), token);
        self.vault.tag(secret_id, &[(tag, value)]).await
    }
}

/// What create read of the secret, which making room and storing the new
/// key build on.
struct SecretFacts<'a> {
    secret_id: &'a str,
    info: &'a SecretInfo,
    /// The AWSCURRENT secret.
    current: &'a ManagedSecret,
    /// When the AWSCURRENT version was created.
    current_created: SystemTime,
    /// Since when the AWSCURRENT key exists (`records::key_since`): no
    /// record is trusted earlier.
    key_since: SystemTime,
}

/// When each recorded superseded key's grace period ends: its record
/// (never trusted before `floor`, the current key's `records::key_since`)
/// plus `grace`.
fn grace_ends(
    facts: &[KeyFacts],
    records: &Records,
    floor: SystemTime,
    grace: Duration,
) -> BTreeMap<String, SystemTime> {
    facts
        .iter()
        .filter_map(|f| {
            let since = *records.superseded.get(&f.key.id)?;
            Some((f.key.id.clone(), trusted_since(since, floor) + grace))
        })
        .collect()
}
