//! Dry runs (`REKEY_DRY_RUN`): the steps run as always and decide as
//! always, but every call that would change something passes through a
//! [`Gated`] port first, which in a dry run logs it and does not make it.
//!
//! Invariant dry-run-changes-nothing: in a dry run no port makes a
//! mutating call (CreateAccessKey, UpdateAccessKey, DeleteAccessKey,
//! PutSecretValue, UpdateSecretVersionStage, TagResource, UntagResource,
//! or a provider's equivalents). It holds here, by construction, whatever
//! the steps decide: the steps cannot reach an ungated port.
//!
//! What stands in for each call:
//! - deleting or deactivating a key, taking a stage off, writing rekey's
//!   records: logged and answered `Ok`, so the step goes on deciding as if
//!   it had been done (cleanup's report then lists what it would do);
//! - creating a key, storing it, moving AWSCURRENT: the step cannot go on
//!   without a real answer, so it fails with `Error::DryRun`, naming what
//!   the step would have done up to there (the keys it would delete to make
//!   room, then the new key).

use std::sync::Mutex;

use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::model::{Credential, LastUsed, ManagedSecret, Sensitive, AWSCURRENT};
use crate::ports::{
    KeyApi, Providers, SecretInfo, SecretPage, SecretVersion, Select, Signer, Vault,
};

/// A port whose mutating calls are held back in a dry run.
#[derive(Debug)]
pub struct Gated<T> {
    inner: T,
    dry_run: bool,
    /// What a key API held back so far (one opened per step and secret):
    /// the start of the `DryRun` error's message.
    held_back: Mutex<Vec<String>>,
}

impl<T> Gated<T> {
    /// `inner`, whose mutating calls go through unless `dry_run`.
    pub fn new(inner: T, dry_run: bool) -> Self {
        Gated {
            inner,
            dry_run,
            held_back: Mutex::new(Vec::new()),
        }
    }

    /// The port behind the gate.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Whether mutating calls are held back.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Notes a change held back, which the step goes on from.
    fn hold_back(&self, what: String) {
        info!(dry_run = true, "dry run: would {what}");
        self.held_back.lock().unwrap().push(what);
    }

    /// The error of a change the step cannot go on without: everything
    /// held back so far, then `what`.
    fn stop_at(&self, what: String) -> Error {
        let mut steps = std::mem::take(&mut *self.held_back.lock().unwrap());
        steps.push(what);
        Error::DryRun {
            would: steps.join(", then "),
        }
    }
}

impl<V: Vault> Vault for Gated<V> {
    async fn describe(&self, secret_id: &str) -> Result<SecretInfo> {
        self.inner.describe(secret_id).await
    }

    async fn read(&self, secret_id: &str, which: Select<'_>) -> Result<Option<SecretVersion>> {
        self.inner.read(secret_id, which).await
    }

    async fn put_pending(&self, secret_id: &str, token: &str, value: &Sensitive) -> Result<()> {
        if self.dry_run {
            return Err(self.stop_at(format!(
                "store the new key as version {token} (AWSPENDING) of secret {secret_id}"
            )));
        }
        self.inner.put_pending(secret_id, token, value).await
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<()> {
        if !self.dry_run {
            return self
                .inner
                .move_stage(secret_id, stage, move_to, remove_from)
                .await;
        }
        match (stage, move_to) {
            (AWSCURRENT, Some(to)) => Err(self.stop_at(format!(
                "promote version {to} of secret {secret_id} to AWSCURRENT"
            ))),
            (_, Some(to)) => {
                info!(
                    dry_run = true,
                    "dry run: would move {stage} to version {to}"
                );
                Ok(())
            }
            (_, None) => {
                let from = remove_from.unwrap_or("none");
                info!(
                    dry_run = true,
                    "dry run: would take {stage} off version {from}"
                );
                Ok(())
            }
        }
    }

    async fn tag(&self, secret_id: &str, tags: &[(String, String)]) -> Result<()> {
        if self.dry_run {
            let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
            debug!(dry_run = true, ?keys, "dry run: would write these records");
            return Ok(());
        }
        self.inner.tag(secret_id, tags).await
    }

    async fn untag(&self, secret_id: &str, keys: &[String]) -> Result<()> {
        if self.dry_run {
            debug!(dry_run = true, ?keys, "dry run: would remove these records");
            return Ok(());
        }
        self.inner.untag(secret_id, keys).await
    }

    async fn list_page(&self, next_token: Option<&str>) -> Result<SecretPage> {
        self.inner.list_page(next_token).await
    }
}

impl<P: Providers> Providers for Gated<P> {
    type KeyApi = Gated<P::KeyApi>;

    async fn open(&self, secret: &ManagedSecret, signer: Option<Signer>) -> Result<Self::KeyApi> {
        Ok(Gated::new(
            self.inner.open(secret, signer).await?,
            self.dry_run,
        ))
    }

    async fn whoami(&self, secret: &ManagedSecret, credential: &Credential) -> Result<String> {
        self.inner.whoami(secret, credential).await
    }
}

impl<K: KeyApi> KeyApi for Gated<K> {
    fn key_limit(&self) -> usize {
        self.inner.key_limit()
    }

    async fn ensure_managed(&self, user: &str, owner: &str) -> Result<()> {
        self.inner.ensure_managed(user, owner).await
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<crate::model::AccessKey>> {
        self.inner.list_keys(user).await
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        if self.dry_run {
            return Err(self.stop_at(format!("create a new access key for user {user}")));
        }
        self.inner.create_key(user).await
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        if self.dry_run {
            self.hold_back(format!("deactivate key {key_id} of user {user}"));
            return Ok(());
        }
        self.inner.deactivate_key(user, key_id).await
    }

    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        if self.dry_run {
            self.hold_back(format!("reactivate key {key_id} of user {user}"));
            return Ok(());
        }
        self.inner.reactivate_key(user, key_id).await
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        if self.dry_run {
            self.hold_back(format!("delete key {key_id} of user {user}"));
            return Ok(());
        }
        self.inner.delete_key(user, key_id).await
    }

    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed> {
        self.inner.last_used(user, key_id).await
    }
}

/// Whether the `rekey` command may make an operator's `change` (`rollback`,
/// `pause`, `resume`, `enroll`, `rotate`; in words, for the message) on a
/// deployment whose functions run dry when `deployment_dry_run` (its
/// `DryRun` parameter, `REKEY_DRY_RUN`). On such a deployment only when the
/// operator says so explicitly (`live`: `--live`); `show_only`
/// (`--dry-run`) changes nothing on any deployment. The refusal says why
/// and how to go on; nothing is changed. Invariant dry-run-changes-nothing,
/// carried to the command: a dry-run deployment changes nothing a person
/// did not ask for in so many words.
pub fn command_may_change(
    change: &str,
    deployment_dry_run: bool,
    live: bool,
    show_only: bool,
) -> std::result::Result<(), String> {
    if !deployment_dry_run || live || show_only {
        return Ok(());
    }
    Err(format!(
        "refusing to {change}: the deployment is a dry run (DryRun=true, REKEY_DRY_RUN=true), so its functions change nothing, and the rekey command does not either unless told to. Nothing was changed. --live makes the change for real; --dry-run only shows it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessKey, KeyStatus};
    use std::time::SystemTime;

    /// A key API whose mutating calls must never be made.
    struct Untouchable;

    impl KeyApi for Untouchable {
        fn key_limit(&self) -> usize {
            2
        }
        async fn ensure_managed(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn list_keys(&self, _: &str) -> Result<Vec<AccessKey>> {
            Ok(vec![AccessKey {
                id: "AKIA1".into(),
                status: KeyStatus::Active,
                created: SystemTime::UNIX_EPOCH,
            }])
        }
        async fn create_key(&self, _: &str) -> Result<Credential> {
            panic!("CreateAccessKey in a dry run")
        }
        async fn deactivate_key(&self, _: &str, _: &str) -> Result<()> {
            panic!("UpdateAccessKey in a dry run")
        }
        async fn reactivate_key(&self, _: &str, _: &str) -> Result<()> {
            panic!("UpdateAccessKey in a dry run")
        }
        async fn delete_key(&self, _: &str, _: &str) -> Result<()> {
            panic!("DeleteAccessKey in a dry run")
        }
        async fn last_used(&self, _: &str, _: &str) -> Result<LastUsed> {
            Ok(LastUsed::Never)
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_dry_run_holds_back_every_change_and_says_what_it_held_back() {
        let keys = Gated::new(Untouchable, true);
        run(async {
            assert_eq!(keys.list_keys("alice").await.unwrap().len(), 1);
            keys.delete_key("alice", "AKIA0").await.unwrap();
            keys.deactivate_key("alice", "AKIA1").await.unwrap();
            let err = keys.create_key("alice").await.unwrap_err();
            assert_eq!(err.kind(), "DryRun");
            assert_eq!(
                err.to_string(),
                "dry run (REKEY_DRY_RUN is true): nothing was changed; rekey would delete key AKIA0 of user alice, then deactivate key AKIA1 of user alice, then create a new access key for user alice. Set REKEY_DRY_RUN (template parameter DryRun) to false to let rekey act"
            );
            // What was said is not said again.
            let err = keys.create_key("bob").await.unwrap_err();
            assert!(err
                .to_string()
                .contains("would create a new access key for user bob."));
        });
    }

    #[test]
    #[should_panic(expected = "CreateAccessKey in a dry run")]
    fn live_calls_go_through() {
        run(async {
            let _ = Gated::new(Untouchable, false).create_key("alice").await;
        });
    }

    #[test]
    fn the_command_changes_a_dry_run_deployment_only_when_told_to_live() {
        let change = "pause rekey/aws/alice";
        assert_eq!(command_may_change(change, false, false, false), Ok(()));
        assert_eq!(command_may_change(change, true, true, false), Ok(()));
        // Shown only: nothing changes, on any deployment.
        assert_eq!(command_may_change(change, true, false, true), Ok(()));
        let why = command_may_change(change, true, false, false).unwrap_err();
        for needed in [
            change,
            "dry run",
            "--live",
            "for real",
            "Nothing was changed",
        ] {
            assert!(why.contains(needed), "{needed:?} not in {why}");
        }
    }
}
