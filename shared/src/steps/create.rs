//! createSecret / rekey-create: make room under the key limit, create the
//! new key, and store it as the token's AWSPENDING version.

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Driver, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::model::{ManagedSecret, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::plan::{self, KeyFacts, KeyRole, Room, RoomContext};
use crate::ports::{KeyProvider, Select, Vault};
use crate::steps::cleanup::load_records;

/// What createSecret found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new key was created and stored as AWSPENDING, after deleting
    /// `removed` to make room.
    New {
        key_id: String,
        removed: Option<String>,
    },
    /// The token's version already holds its new key.
    AlreadyPending { key_id: String },
    /// The token's version is already AWSCURRENT.
    AlreadyCurrent,
    /// The AWSCURRENT version is younger than the rotation period.
    NotDue { current_since: SystemTime },
}

impl<V: Vault, P: KeyProvider> Rekey<V, P> {
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
            if !plan::is_due(current_version.created, period, SystemTime::now()) {
                return Ok(Created::NotDue {
                    current_since: current_version.created,
                });
            }
        }

        if state == TokenState::Pending {
            if let Some(key_id) = self.pending_key(secret_id, token, &current).await? {
                info!(key_id, "the token's version already holds its new key");
                return Ok(Created::AlreadyPending { key_id });
            }
        }

        let user = current.user_name.as_str();
        self.provider.ensure_managed(user).await?;
        let keys = self.provider.list_keys(user).await?;
        let mut removed = None;
        if keys.len() >= self.provider.key_limit() {
            // Only at the limit is more needed: the previous version, the
            // grace-period records and the last use of orphan candidates.
            let previous_key = match info.version_with(AWSPREVIOUS) {
                Some(v) if Some(v) != info.version_with(AWSCURRENT) => self
                    .vault
                    .read(secret_id, Select::Stage(AWSPREVIOUS))
                    .await?
                    .and_then(|v| ManagedSecret::parse(v.value.expose()).ok())
                    .and_then(|s| s.key_id().map(str::to_owned)),
                _ => None,
            };
            let role = |id: &str| {
                if Some(id) == current.key_id() {
                    KeyRole::Current
                } else if previous_key.as_deref() == Some(id) {
                    KeyRole::Previous
                } else {
                    KeyRole::Unreferenced
                }
            };
            let mut facts = Vec::with_capacity(keys.len());
            for key in keys {
                let mut f = KeyFacts {
                    role: role(&key.id),
                    key,
                    last_used: None,
                };
                if plan::is_orphan_candidate(&f, current_version.created) {
                    f.last_used = Some(self.provider.last_used(user, &f.key.id).await?);
                }
                facts.push(f);
            }
            let grace_ends = previous_key.as_ref().and_then(|id| {
                load_records(&info)
                    .superseded
                    .get(id)
                    .map(|t| *t + self.config.deactivate_after)
            });
            let ctx = RoomContext {
                user,
                limit: self.provider.key_limit(),
                current_version_created: current_version.created,
                grace_ends,
            };
            match plan::make_room(&facts, &ctx) {
                Room::Free => {}
                Room::DeleteInactive(id) => {
                    info!(
                        key_id = id,
                        user, "deleting the oldest inactive key to make room"
                    );
                    self.provider.delete_key(user, &id).await?;
                    removed = Some(id);
                }
                Room::ReclaimOrphan(id) => {
                    info!(
                        key_id = id,
                        user, "reclaiming an orphan key left by an interrupted attempt"
                    );
                    self.provider.delete_key(user, &id).await?;
                    removed = Some(id);
                }
                Room::Blocked(why) => return Err(Error::KeyLimitReached(why.to_string())),
            }
        }

        let new_key = self.provider.create_key(user).await?;
        let key_id = new_key.access_key_id.clone();
        info!(key_id, user, "created a new access key");
        let next = current.with_credential(new_key);
        match self
            .vault
            .put_pending(secret_id, token, &next.to_secret_string())
            .await
        {
            Ok(()) => Ok(Created::New { key_id, removed }),
            Err(err) => {
                // The write may have taken effect with its answer lost: only
                // delete the key if the version does not hold it.
                if let Ok(Some(stored)) = self.pending_key(secret_id, token, &current).await {
                    if stored == key_id {
                        return Ok(Created::New { key_id, removed });
                    }
                }
                warn!(key_id, user, error = %err, "storing the new key failed; deleting it");
                if let Err(e) = self.provider.delete_key(user, &key_id).await {
                    warn!(key_id, user, error = %e, "could not delete the unstored key; the next attempt reclaims it");
                }
                Err(err)
            }
        }
    }

    /// The new key the token's AWSPENDING version holds, if it holds one
    /// (a version Secrets Manager made for the token holds no value, or a
    /// copy of the current one).
    async fn pending_key(
        &self,
        secret_id: &str,
        token: &str,
        current: &ManagedSecret,
    ) -> Result<Option<String>> {
        let Some(version) = self
            .vault
            .read(secret_id, Select::Version(token, AWSPENDING))
            .await?
        else {
            return Ok(None);
        };
        let pending = self.parse(
            secret_id,
            &format!("version {token} (AWSPENDING)"),
            &version,
        )?;
        Ok(pending
            .key_id()
            .filter(|id| Some(*id) != current.key_id())
            .map(str::to_owned))
    }
}
