//! finishSecret / rekey-finish: promote the token's version to AWSCURRENT,
//! take AWSPENDING off it, and start the superseded key's grace period.

use tracing::{info, warn};

use super::{label, other_key, pending_version, Driver, Probing, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::events::{KeyHolder, Promotion};
use crate::model::{ManagedSecret, AWSCURRENT, AWSPENDING};
use crate::plan::timestamp;
use crate::ports::{Clock, KeyApi, Providers, SecretInfo, Select, Vault};
use crate::records::{record_tag, CurrentRecord, CURRENT, INACTIVE, SUPERSEDED};

/// What finishSecret found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Promoted; `deactivated` is the superseded key if it was deactivated
    /// at once (`REKEY_DEACTIVATE_AFTER=0s`).
    Promoted {
        /// Whose key, the new key and the one it superseded.
        promotion: Promotion,
        /// The superseded key, if finish deactivated it.
        deactivated: Option<String>,
    },
    /// The token's version was AWSCURRENT already.
    AlreadyCurrent,
}

/// How a stage moves with respect to the token's version.
#[derive(Clone, Copy, Debug)]
enum StageMove<'a> {
    /// Onto the token's version, off the version `from` (if any).
    Onto { from: Option<&'a str> },
    /// Off the token's version.
    Off,
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// finishSecret: promote the token's version, after one more probe of
    /// its key (invariant current-key-works), and start the superseded
    /// key's grace period.
    pub async fn finish(&self, secret_id: &str, token: &str, driver: Driver) -> Result<Finished> {
        let (info, state) = self.guard(secret_id, token, driver).await?;
        if let Some(done) = self
            .finished_already(secret_id, token, &info, state)
            .await?
        {
            return Ok(done);
        }
        // Invariant current-key-works: never promote a version that holds
        // no working key: one more probe (finish may be called without a
        // test before it).
        let (pending, made) = self.read_pending(secret_id, token).await?.ok_or_else(|| {
            Error::invalid_secret(
                secret_id,
                &label(pending_version(token)),
                "it holds no value",
            )
        })?;
        // The version to promote must own its user; the key it supersedes
        // is retired only if the current version names the same user.
        let credential = self.pending_credential(secret_id, &info, &pending)?;
        let new_key = credential.access_key_id.clone();
        self.probe(secret_id, &pending, credential, Probing::Once, 1)
            .await?;
        let current_version = info
            .version_with(AWSCURRENT)
            .ok_or_else(|| {
                Error::invalid_secret(secret_id, AWSCURRENT, "no version is AWSCURRENT")
            })?
            .to_owned();
        let old_key = self.superseded_key(secret_id, &pending).await?;
        // Invariant retire-by-record: the record first. Once the old key is
        // superseded, nothing can lose the fact, whatever labels move
        // later. A failed record fails the step before anything changed.
        // The same call records the version about to become current, for
        // the sweep (a promotion that then fails leaves a record for
        // another version than AWSCURRENT's: the sweep checks in full).
        // Its time is the new version's creation, moments after its key's
        // (a full check sets the key's own: `CurrentRecord::after_check`),
        // from which the sweep counts the rotation period.
        let now = self.clock.now();
        let current = CurrentRecord {
            version: token.to_owned(),
            key_id: new_key.clone(),
            since: made,
        };
        let mut records = vec![(CURRENT.to_owned(), current.value())];
        if let Some(old) = &old_key {
            records.push((record_tag(SUPERSEDED, old), timestamp(now)));
        }
        self.vault.tag(secret_id, &records).await?;
        self.promote(secret_id, token, &current_version).await?;
        info!(key_id = new_key, "promoted the new key to AWSCURRENT");
        let deactivated = match &old_key {
            Some(old) if self.grace_of(&info.name).is_zero() => self
                .deactivate_at_once(secret_id, &info.arn, &pending, old)
                .await
                .then(|| old.clone()),
            _ => None,
        };
        let promotion = Promotion {
            holder: KeyHolder::of(&info, &pending),
            new_key,
            old_key,
        };
        Ok(Finished::Promoted {
            promotion,
            deactivated,
        })
    }

    /// The answer when there is nothing to promote: the token's version is
    /// AWSCURRENT already (a finish that stopped after promoting: tidy the
    /// label), or it does not exist.
    async fn finished_already(
        &self,
        secret_id: &str,
        token: &str,
        info: &SecretInfo,
        state: TokenState,
    ) -> Result<Option<Finished>> {
        match state {
            TokenState::Current => {
                if info.has_stage(token, AWSPENDING) {
                    self.vault
                        .move_stage(secret_id, AWSPENDING, None, Some(token))
                        .await?;
                }
                Ok(Some(Finished::AlreadyCurrent))
            }
            TokenState::Absent => Err(Error::TokenNotFound {
                secret_id: secret_id.to_owned(),
                token: token.to_owned(),
            }),
            TokenState::Pending => Ok(None),
        }
    }

    /// The key the AWSCURRENT version holds, which promoting `pending`
    /// supersedes: only a key of the same user, other than the new key.
    async fn superseded_key(
        &self,
        secret_id: &str,
        pending: &ManagedSecret,
    ) -> Result<Option<String>> {
        let current: Option<ManagedSecret> = self
            .vault
            .read(secret_id, Select::Stage(AWSCURRENT))
            .await?
            .and_then(|v| ManagedSecret::parse(v.value.expose()).ok());
        Ok(current
            .filter(|c| c.same_user(pending))
            .and_then(|c| other_key(&c, pending)))
    }

    /// Moves AWSCURRENT onto the token's version (AWSPREVIOUS follows by
    /// itself), then takes AWSPENDING off it.
    async fn promote(&self, secret_id: &str, token: &str, current_version: &str) -> Result<()> {
        let onto = StageMove::Onto {
            from: Some(current_version),
        };
        self.move_stage_checked(secret_id, AWSCURRENT, token, onto)
            .await?;
        self.move_stage_checked(secret_id, AWSPENDING, token, StageMove::Off)
            .await
    }

    /// Moves `stage` onto or off the token's version. A call whose answer
    /// was lost may have taken effect, and the SDK's retry of it then
    /// fails: so on failure, look before reporting it.
    async fn move_stage_checked(
        &self,
        secret_id: &str,
        stage: &str,
        token: &str,
        how: StageMove<'_>,
    ) -> Result<()> {
        let (move_to, remove_from, wanted_on_token) = match how {
            StageMove::Onto { from } => (Some(token), from, true),
            StageMove::Off => (None, Some(token), false),
        };
        match self
            .vault
            .move_stage(secret_id, stage, move_to, remove_from)
            .await
        {
            Ok(()) => Ok(()),
            Err(err) => {
                let info = self.vault.describe(secret_id).await?;
                if info.has_stage(token, stage) == wanted_on_token {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Deactivates `key_id` if it is one of the user's keys: the id comes
    /// from a secret's value, and some providers (SCloud) change a key by id
    /// alone, so it is checked against the owning user's key list first
    /// (invariant managed-users-only).
    async fn deactivate_own_key(
        &self,
        secret_id: &str,
        secret_arn: &str,
        current: &ManagedSecret,
        key_id: &str,
    ) -> Result<()> {
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, current).await?;
        provider.ensure_managed(user, secret_arn).await?;
        if !provider
            .list_keys(user)
            .await?
            .iter()
            .any(|k| k.id == key_id)
        {
            return Err(Error::invalid_secret(
                secret_id,
                "AWSPREVIOUS",
                format!("its key {key_id} is not a key of user {user}"),
            ));
        }
        provider.deactivate_key(user, key_id).await
    }

    /// With `REKEY_DEACTIVATE_AFTER=0s`, deactivates the superseded key at
    /// once (signed as the now current secret says) and records it
    /// inactive. Invariant current-key-kept: only the key AWSCURRENT held
    /// before, never the one it holds now. A failure leaves the rotation finished: the key's
    /// superseded record has cleanup deactivate it. Returns whether it did.
    async fn deactivate_at_once(
        &self,
        secret_id: &str,
        secret_arn: &str,
        current: &ManagedSecret,
        old_key: &str,
    ) -> bool {
        if let Err(e) = self
            .deactivate_own_key(secret_id, secret_arn, current, old_key)
            .await
        {
            warn!(key_id = old_key, error = %e, "could not deactivate the superseded key; rekey-cleanup will");
            return false;
        }
        info!(key_id = old_key, "deactivated the superseded key");
        let now = timestamp(self.clock.now());
        let tag = record_tag(INACTIVE, old_key);
        if let Err(e) = self.vault.tag(secret_id, &[(tag, now)]).await {
            warn!(key_id = old_key, error = %e, "could not record when the key became inactive; rekey-cleanup will");
        }
        true
    }
}
