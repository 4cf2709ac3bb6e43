//! The things the steps talk to: the vault that holds each managed key
//! pair (Secrets Manager), the providers that issue keys (IAM, RAM, ...)
//! and the clock. Steps are generic over these traits; adapters live in
//! `vault/` and `providers/`.

#![allow(async_fn_in_trait)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::model::{AccessKey, Credential, LastUsed, ManagedSecret, Sensitive};

/// A secret's metadata, as DescribeSecret returns it.
#[derive(Clone, Debug, Default)]
pub struct SecretInfo {
    /// The secret's full ARN.
    pub arn: String,
    /// The secret's name.
    pub name: String,
    /// Whether Secrets Manager rotation is enabled, i.e. whether the hook
    /// (rather than the pipeline) drives its rotations.
    pub rotation_enabled: bool,
    /// The secret's tags, where rekey keeps its records (`rekey:*`).
    pub tags: BTreeMap<String, String>,
    /// Version id -> its staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
}

impl SecretInfo {
    /// The version that carries `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }

    /// Whether version `version` carries `stage`.
    pub fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.versions
            .get(version)
            .is_some_and(|stages| stages.iter().any(|s| s == stage))
    }
}

/// One version of a secret with its value.
#[derive(Clone, Debug)]
pub struct SecretVersion {
    /// The version's id (for a rotation's version, its token).
    pub version_id: String,
    /// When the version was created.
    pub created: SystemTime,
    /// The version's SecretString: the managed secret's JSON.
    pub value: Sensitive,
}

/// Which version to read: always by stage or by id, never the default.
#[derive(Clone, Copy, Debug)]
pub enum Select<'a> {
    /// The version that carries this stage.
    Stage(&'a str),
    /// A version by its id, which must carry `stage`.
    Version {
        /// The version id (a rotation's token).
        id: &'a str,
        /// The stage it must carry.
        stage: &'a str,
    },
}

/// Where the managed secrets live: AWS Secrets Manager, with its versions,
/// stages and tags.
pub trait Vault {
    /// DescribeSecret. A missing secret is `Error::SecretNotFound`.
    async fn describe(&self, secret_id: &str) -> Result<SecretInfo>;
    /// GetSecretValue. `None` when that version or stage holds no value.
    async fn read(&self, secret_id: &str, which: Select<'_>) -> Result<Option<SecretVersion>>;
    /// PutSecretValue with the token as version id, staged AWSPENDING.
    async fn put_pending(&self, secret_id: &str, token: &str, value: &Sensitive) -> Result<()>;
    /// UpdateSecretVersionStage.
    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<()>;
    /// TagResource: sets these tags (key, value) on the secret.
    async fn tag(&self, secret_id: &str, tags: &[(String, String)]) -> Result<()>;
    /// UntagResource: removes the tags with these keys from the secret.
    async fn untag(&self, secret_id: &str, keys: &[String]) -> Result<()>;
    /// ListSecrets: one page of the secrets that carry the tag
    /// `rekey:managed`, whatever its value (`records::enrolment` tells the
    /// managed ones from near misses), each as DescribeSecret would
    /// describe it (ListSecrets returns the tags and version stages too),
    /// from `next_token` (`None`: the first page).
    async fn list_page(&self, next_token: Option<&str>) -> Result<SecretPage>;
}

/// One page of ListSecrets.
#[derive(Clone, Debug, Default)]
pub struct SecretPage {
    /// The secrets of the page (never a deleted one).
    pub secrets: Vec<SecretInfo>,
    /// Where the next page starts; `None` after the last.
    pub next_token: Option<String>,
}

/// The key pair that signs a provider's calls, where it came from (for
/// messages: an admin secret's id, or the user's own current key), and the
/// project the calls are made in, for providers that have projects.
#[derive(Clone, Debug)]
pub struct Signer {
    /// The signing key pair.
    pub credential: Credential,
    /// Where the key pair came from, for messages: the admin secret's id or
    /// the managed secret's own.
    pub origin: String,
    /// The project the calls are made in, for providers that have projects
    /// (SCloud's `ProjectId`).
    pub project_id: Option<String>,
}

/// Every provider rekey can rotate keys for.
pub trait Providers {
    /// The key management of one provider, as `open` returns it.
    type KeyApi: KeyApi;
    /// The key management of the provider `secret` names, in its account
    /// (`AccountId`, when it names a member account). `signer` signs its
    /// calls when the provider's `signing()` is `KeyPair` (it is `None` for
    /// `Ambient`). Fails with `InvalidConfig` when a setting that provider
    /// needs is missing, and with `MemberAccountUnreachable` when the
    /// member account's role cannot be assumed.
    async fn open(&self, secret: &ManagedSecret, signer: Option<Signer>) -> Result<Self::KeyApi>;
    /// Authenticates with `credential`, a key of `secret`'s provider, and
    /// returns the user name it acts as (`secret` also gives the user it
    /// should be and its project, for providers that can only confirm a
    /// user). Any failure to authenticate is an error.
    async fn whoami(&self, secret: &ManagedSecret, credential: &Credential) -> Result<String>;
}

/// One provider's key management, for one signer.
pub trait KeyApi {
    /// The provider's per-user key limit.
    fn key_limit(&self) -> usize;
    /// Fails with `UserNotManaged` or `UserNotFound` unless rekey may
    /// rotate this user's keys, and with `SecretNotOwner` where the provider
    /// binds a user to its owning secret (AWS: the user's `rekey:owner` tag
    /// must name `owner`, the owning secret's ARN). Called before any change.
    async fn ensure_managed(&self, user: &str, owner: &str) -> Result<()>;
    /// The user's access keys, without their secrets.
    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>>;
    /// A limit error is `Error::KeyLimitReached`.
    async fn create_key(&self, user: &str) -> Result<Credential>;
    /// Ok if the key is already gone.
    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()>;
    /// Makes an inactive key active again (an operator's rollback, never a
    /// rotation); fails if the key is gone.
    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()>;
    /// Ok if the key is already gone.
    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()>;
    /// When the key last signed a request; `LastUsed::Unknown` where the
    /// provider cannot tell.
    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed>;
}

/// Time, as the steps see it. The functions use [`SystemClock`]; the
/// simulation moves its own clock, so grace periods, deadlines and probe
/// pauses pass without waiting.
pub trait Clock {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// Waits for `duration` (a pause between probes or before a retry).
    async fn sleep(&self, duration: Duration);
}

/// `work`'s output, or `None` when `limit` passes on `clock` first (what
/// is left of `work` is dropped: every step is safe to cut off between
/// any two calls, as a crash would).
pub async fn within<C: Clock, F: std::future::Future>(
    clock: &C,
    limit: Duration,
    work: F,
) -> Option<F::Output> {
    let work = std::pin::pin!(work);
    let alarm = std::pin::pin!(clock.sleep(limit));
    match futures::future::select(work, alarm).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// The system's clock and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}
