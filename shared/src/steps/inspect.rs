//! What an operator sees of one managed secret (`rekey status`, `rekey
//! plan`): its user and keys with their last use, and what the next
//! rotation and the next cleanup would do, decided by `create` and
//! `cleanup` themselves in a dry run. Read only: refused unless the steps
//! run dry (invariant dry-run-changes-nothing then holds for it too).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Driver, Rekey, SecretCleanup};
use crate::error::{Error, Result};
use crate::events::KeyHolder;
use crate::model::{AccessKey, LastUsed, AWSCURRENT, AWSPENDING};
use crate::ports::{Clock, KeyApi, Providers, SecretInfo, Select, Vault};
use crate::records::{self, Enrolment};
use crate::steps::Created;
use crate::triage::{self, Pause};

/// One managed secret, as `inspect` found it.
#[derive(Debug)]
pub struct Inspection {
    /// The secret as DescribeSecret (or ListSecrets) describes it.
    pub info: SecretInfo,
    /// Whose keys (provider, account, user, owner).
    pub holder: KeyHolder,
    /// Who drives its rotation.
    pub driver: Driver,
    /// Tagged `rekey:paused`.
    pub paused: bool,
    /// Since when it is paused, by its `rekey:paused-since` record, and
    /// whether for longer than `REKEY_PAUSED_ALERT_AFTER` (invariant
    /// liveness: nothing goes silent).
    pub pause: Option<Pause>,
    /// The key AWSCURRENT holds.
    pub current_key: Option<String>,
    /// Since when the AWSCURRENT key exists (`records::key_since`: its
    /// creation as the provider reports it), from which its age and the
    /// next rotation count.
    pub current_since: SystemTime,
    /// The token of a rotation in progress (AWSPENDING on another version).
    pub rotating: Option<String>,
    /// The user's keys at the provider, with their last use.
    pub keys: Vec<(AccessKey, LastUsed)>,
    /// What a rotation started now would do (`Err(DryRun)`: what it would
    /// change; `Ok(NotDue)`: nothing yet), or why it cannot.
    pub rotation: Result<Created>,
    /// What a cleanup run now would do (its report, run dry), or why it
    /// cannot.
    pub cleanup: Result<SecretCleanup>,
}

/// The rotation a preview would make, in a word, for tables and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationOutlook {
    /// A rotation would start now.
    Rotate,
    /// Not due yet.
    NotDue,
    /// Another rotation is in progress.
    InProgress,
    /// Paused by its tag.
    Paused,
    /// It would fail (the error says why).
    Blocked,
}

impl Inspection {
    /// What the next rotation would do, in a word.
    pub fn rotation_outlook(&self) -> RotationOutlook {
        match &self.rotation {
            _ if self.paused => RotationOutlook::Paused,
            Err(Error::DryRun { .. }) => RotationOutlook::Rotate,
            Ok(Created::NotDue { .. }) => RotationOutlook::NotDue,
            Err(Error::RotationInProgress { admin: None, .. }) => RotationOutlook::InProgress,
            Ok(_) => RotationOutlook::InProgress,
            Err(_) => RotationOutlook::Blocked,
        }
    }

    /// When the next rotation is due with `period`.
    pub fn rotation_due(&self, period: Duration) -> SystemTime {
        self.current_since + period
    }
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// One managed secret as an operator needs to see it; with `period`,
    /// the rotation preview waits for AWSCURRENT to be that old (the
    /// pipeline's period), else a rotation would start now.
    pub async fn inspect(&self, secret_id: &str, period: Option<Duration>) -> Result<Inspection> {
        if !self.config.dry_run {
            return Err(Error::Internal {
                operation: "inspect a secret",
                reason: "the steps must run dry to inspect".into(),
            });
        }
        let info = self.vault.describe(secret_id).await?;
        let paused = match records::enrolment(&info) {
            e @ (Enrolment::NotManaged | Enrolment::NearMiss) => {
                return Err(records::not_managed(secret_id, e))
            }
            Enrolment::Paused => true,
            Enrolment::Managed => false,
        };
        let (current_read, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        self.check_owner(secret_id, &info, &current)?;
        let provider = self.provider_for(secret_id, &current).await?;
        let user = current.user_name.as_str();
        let mut keys = Vec::new();
        for key in provider.list_keys(user).await? {
            let used = provider.last_used(user, &key.id).await?;
            keys.push((key, used));
        }
        let listed: Vec<AccessKey> = keys.iter().map(|(k, _)| k.clone()).collect();
        let current_since = records::key_since(&listed, current.key_id(), current_read.created);
        let rotating = info
            .version_with(AWSPENDING)
            .filter(|v| Some(*v) != info.version_with(AWSCURRENT))
            .map(str::to_owned);
        // A paused secret is refused by both steps.
        let (rotation, cleanup) = if paused {
            (
                Err(Error::SecretPaused {
                    secret_id: secret_id.to_owned(),
                }),
                Err(Error::SecretPaused {
                    secret_id: secret_id.to_owned(),
                }),
            )
        } else {
            (
                self.preview_rotation(secret_id, period).await,
                self.cleanup(secret_id).await,
            )
        };
        Ok(Inspection {
            holder: KeyHolder::of(&info, &current),
            driver: if info.rotation_enabled {
                Driver::Hook
            } else {
                Driver::Pipeline
            },
            paused,
            pause: triage::pause(&info, self.clock.now(), self.config.paused_alert_after),
            current_key: current.key_id().map(str::to_owned),
            current_since,
            rotating,
            keys,
            rotation,
            cleanup,
            info,
        })
    }
}
