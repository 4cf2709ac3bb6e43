//! `rekey rollback`: put the key of AWSPREVIOUS back to AWSCURRENT, as one
//! safe step (README "Rolling a promotion back"). Not a rotation step: an
//! operator's, run by the `rekey` command.
//!
//! It refuses what would break an invariant: a rotation in progress would
//! promote over the rollback, and an active key that no version holds
//! would never be retired (invariant retire-by-record). The order makes a
//! crash at any point safe to run again: pause (and record since when:
//! `rekey:paused-since`) and record the key rolled
//! back from as superseded first (so it is retired whatever happens to the
//! labels later), then reactivate the key rolled back to, then move
//! AWSCURRENT, then drop that key's timers (it is current again).

use serde::Serialize;
use tracing::info;

use super::{other_key, Rekey};
use crate::error::Result;
use crate::events::KeyHolder;
use crate::model::{KeyStatus, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::plan::timestamp;
use crate::ports::{Clock, KeyApi, Providers, Select, Vault};
use crate::records::{
    self, record_tag, Enrolment, INACTIVE, SUPERSEDED, TAG_PAUSED, TAG_PAUSED_SINCE,
};

/// A rollback: from the key AWSCURRENT holds to the one AWSPREVIOUS holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RollBack {
    /// The secret's ARN.
    pub secret_id: String,
    /// The provider's user.
    pub user_name: String,
    /// The key rolled back from (AWSCURRENT before), and its version.
    pub from_key: String,
    /// The AWSCURRENT version before.
    pub from_version: String,
    /// The key rolled back to (AWSPREVIOUS before), and its version.
    pub to_key: String,
    /// The AWSPREVIOUS version before, AWSCURRENT after.
    pub to_version: String,
    /// The key rolled back to is inactive, and is made active again.
    pub reactivate: bool,
    /// The secret was not paused, and is paused.
    pub pause: bool,
    /// Whose keys, for the `Key Rolled Back` event (boxed: the outcome
    /// stays small).
    #[serde(skip)]
    pub holder: Box<KeyHolder>,
}

/// What [`Rekey::roll_back`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollBackOutcome {
    /// Rolled back (in a dry run: what a rollback would do, and nothing
    /// changed).
    Ready(RollBack),
    /// Not rolled back, and nothing changed: why, and what a person does.
    Refused(String),
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// Rolls `secret_id` back to its AWSPREVIOUS key, and leaves it paused
    /// (an operator resumes it once the cause is understood). With
    /// `shown`, the rollback an operator confirmed (decided in a dry run):
    /// refused if the secret has changed since.
    pub async fn roll_back(
        &self,
        secret_id: &str,
        shown: Option<&RollBack>,
    ) -> Result<RollBackOutcome> {
        let refuse = |why: String| Ok(RollBackOutcome::Refused(why));
        let info = self.vault.describe(secret_id).await?;
        let paused = match records::enrolment(&info) {
            e @ (Enrolment::NotManaged | Enrolment::NearMiss) => {
                return Err(records::not_managed(secret_id, e))
            }
            Enrolment::Paused => true,
            Enrolment::Managed => false,
        };
        let (from_version, to_version) = match (
            info.version_with(AWSCURRENT),
            info.version_with(AWSPREVIOUS),
        ) {
            (Some(c), Some(p)) if c != p => (c.to_owned(), p.to_owned()),
            _ => return refuse("no AWSPREVIOUS version to roll back to".into()),
        };
        if let Some(pending) = info.version_with(AWSPENDING).filter(|v| *v != from_version) {
            return refuse(format!(
                "a rotation is in progress (token {pending}); it would promote over the rollback: let it finish (or be abandoned) and roll back then"
            ));
        }
        let (_, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        self.check_owner(secret_id, &info, &current)?;
        self.check_admin_claim(secret_id, &info, &current).await?;
        let (_, previous) = self
            .read_secret(secret_id, Select::Stage(AWSPREVIOUS))
            .await?;
        if !previous.same_user(&current) {
            return refuse(format!(
                "AWSPREVIOUS holds a key of another user than AWSCURRENT's ({}): roll back by hand if you must",
                previous.user_name
            ));
        }
        let (Some(from_key), Some(to_key)) = (
            current.key_id().map(str::to_owned),
            other_key(&previous, &current),
        ) else {
            return refuse("AWSPREVIOUS holds the same key as AWSCURRENT, or none".into());
        };
        let user = current.user_name.as_str();
        let provider = self.provider_for(secret_id, &current).await?;
        provider.ensure_managed(user, &info.arn).await?;
        let keys = provider.list_keys(user).await?;
        let Some(target) = keys.iter().find(|k| k.id == to_key) else {
            return refuse(format!(
                "key {to_key} of user {user} (AWSPREVIOUS) was deleted: there is nothing to roll back to; rotate instead"
            ));
        };
        if let Some(stray) = keys
            .iter()
            .find(|k| k.status == KeyStatus::Active && k.id != to_key && k.id != from_key)
        {
            return refuse(format!(
                "key {} of user {user} is active and no version would hold it after the rollback: deactivate it first if nothing uses it",
                stray.id
            ));
        }
        let plan = RollBack {
            secret_id: info.arn.clone(),
            user_name: user.to_owned(),
            from_key,
            from_version,
            to_key,
            to_version,
            reactivate: target.status == KeyStatus::Inactive,
            pause: !paused,
            holder: Box::new(KeyHolder::of(&info, &current)),
        };
        if shown.is_some_and(|s| {
            (&s.from_version, &s.to_version) != (&plan.from_version, &plan.to_version)
        }) {
            return refuse(
                "the secret changed since the rollback was shown: run the command again".into(),
            );
        }
        if self.config.dry_run {
            return Ok(RollBackOutcome::Ready(plan));
        }
        // Pause and record first: from here the key rolled back from is
        // retired by its record whatever happens to the labels.
        let mut tags = vec![(
            record_tag(SUPERSEDED, &plan.from_key),
            timestamp(self.clock.now()),
        )];
        if plan.pause {
            // Since when, so the pause is counted and, past
            // REKEY_PAUSED_ALERT_AFTER, alarmed (invariant liveness).
            tags.push((TAG_PAUSED.to_owned(), "true".to_owned()));
            tags.push((TAG_PAUSED_SINCE.to_owned(), timestamp(self.clock.now())));
        }
        self.vault.tag(&info.arn, &tags).await?;
        if plan.reactivate {
            provider.reactivate_key(user, &plan.to_key).await?;
        }
        self.vault
            .move_stage(
                &info.arn,
                AWSCURRENT,
                Some(&plan.to_version),
                Some(&plan.from_version),
            )
            .await?;
        let timers: Vec<String> = [SUPERSEDED, INACTIVE]
            .iter()
            .map(|p| record_tag(p, &plan.to_key))
            .filter(|t| info.tags.contains_key(t))
            .collect();
        if !timers.is_empty() {
            self.vault.untag(&info.arn, &timers).await?;
        }
        info!(
            from_key = plan.from_key,
            to_key = plan.to_key,
            "rolled back to the AWSPREVIOUS key; the secret is paused"
        );
        Ok(RollBackOutcome::Ready(plan))
    }
}
