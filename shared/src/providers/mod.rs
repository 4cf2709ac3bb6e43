//! Key provider adapters, and the registry that opens the right one for a
//! secret.

mod acs3;
mod alibaba;
mod aws;
mod scloud;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

pub use alibaba::AlibabaRam;
pub use aws::{assumed, AwsClients, AwsIam};
pub use scloud::SCloud;

use crate::config::{self, AlibabaSettings, Config, MemberSettings, SCloudSettings};
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::model::{AccessKey, Credential, LastUsed, ManagedSecret, Provider};
use crate::ports::{KeyApi, Providers, Signer};

/// Every provider, as deployed: clients are built once per process, the
/// HTTP client of the non-AWS providers on first use.
#[derive(Debug)]
pub struct LiveProviders {
    aws: AwsClients,
    /// The function's AWS configuration, from which member accounts' roles
    /// are assumed.
    sdk: aws_config::SdkConfig,
    member: MemberSettings,
    /// Each member account's clients and when their credentials expire:
    /// assumed once, used until shortly before they expire. One lock per
    /// account, so concurrent steps (a sweep) assume its role once.
    members: Mutex<HashMap<String, Arc<MemberSlot>>>,
    managed_user_path: Option<String>,
    alibaba: AlibabaSettings,
    scloud: SCloudSettings,
    http: OnceLock<HttpClient>,
}

impl LiveProviders {
    /// The providers, set up from the AWS configuration and rekey's
    /// settings. Builds no HTTP client yet.
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        LiveProviders {
            aws: AwsClients::new(sdk),
            sdk: sdk.clone(),
            member: config.member.clone(),
            members: Mutex::new(HashMap::new()),
            managed_user_path: config.managed_user_path.clone(),
            alibaba: config.alibaba.clone(),
            scloud: config.scloud.clone(),
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<HttpClient> {
        if let Some(client) = self.http.get() {
            return Ok(client.clone());
        }
        let connector = crate::sdk::shared_connector(&self.sdk).ok_or(Error::Internal {
            operation: "HTTP set-up",
            reason: "the AWS configuration has no HTTP client (load it with rekey::sdk::loader)"
                .into(),
        })?;
        let client = HttpClient::new(connector);
        Ok(self.http.get_or_init(|| client).clone())
    }

    /// The clients of member account `account`: its member role's, assumed
    /// on first use and again when its credentials are about to expire.
    async fn member_clients(&self, account: &str) -> Result<AwsClients> {
        let slot = self
            .members
            .lock()
            .unwrap()
            .entry(account.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some((clients, expires)) = slot.as_ref() {
            if SystemTime::now() + CREDENTIALS_MARGIN < *expires {
                return Ok(clients.clone());
            }
        }
        let external_id = self.member.external_id.as_deref().ok_or_else(|| {
            config::required(config::MEMBER_EXTERNAL_ID, "aws in a member account")
        })?;
        let partition = partition(self.sdk.region().map(|r| r.as_ref()).unwrap_or(""));
        let role_arn = self.member.role_arn(partition, account);
        let (clients, expires) =
            AwsClients::assume(&self.sdk, account, &role_arn, external_id).await?;
        *slot = Some((clients.clone(), expires));
        Ok(clients)
    }

    fn alibaba_api(&self) -> Result<alibaba::Api> {
        Ok(alibaba::Api::new(self.http()?, &self.alibaba))
    }

    fn scloud_api(&self) -> Result<scloud::Api> {
        Ok(scloud::Api::new(self.http()?, &self.scloud.endpoint))
    }
}

/// A member account's clients and when their credentials expire, once
/// assumed.
type MemberSlot = tokio::sync::Mutex<Option<(AwsClients, SystemTime)>>;

/// Member credentials are assumed again this long before they expire, so
/// that no call outlives them.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The AWS partition of `region` (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// How long one call of a hand-written client may take.
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// An answer that does not have the shape the provider documents.
fn unexpected(service: &'static str, operation: &'static str, what: String) -> Error {
    Error::Service {
        service,
        operation,
        code: "UnexpectedResponse".into(),
        message: format!("the answer could not be read: {what}"),
        retryable: false,
    }
}

/// The signer a key-pair provider needs; the steps always give one.
fn need_signer(signer: Option<Signer>, kind: Provider) -> Result<Signer> {
    signer.ok_or_else(|| Error::Internal {
        operation: "open provider",
        reason: format!("no key pair was given to sign {} calls", kind.name()),
    })
}

/// Whether a failed call of a hand-written client may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Yes,
    /// Never: a repeat after a lost answer could act twice (CreateAccessKey).
    No,
}

/// Attempts of a call that may be repeated (throttling, 5xx, no answer).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds, fails with an error `retryable` does
/// not accept, or has run 5 times (once with `Retry::No`), pausing with
/// jittered exponential backoff in between. Each attempt signs afresh.
pub(crate) async fn with_retries<T, E, Fut>(
    retry: Retry,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = if retry == Retry::Yes { ATTEMPTS } else { 1 };
    let mut backoff = FIRST_BACKOFF;
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if retryable(&e) && n < attempts => {
                tracing::debug!(attempt = n, "retrying");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                n += 1;
            }
            other => return other,
        }
    }
}

/// A pause of `backoff` give or take a quarter, so that many functions
/// throttled together do not come back together.
fn jitter(backoff: Duration) -> Duration {
    let spread = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    backoff.mul_f64(0.75 + spread / 2.0)
}

/// The provider a secret names.
#[derive(Clone, Debug)]
pub enum LiveKeyApi {
    /// IAM key management, signed by the function's own role.
    Aws(AwsIam),
    /// Boxed: its client and user pattern make it large.
    Alibaba(Box<AlibabaRam>),
    /// SCloud key management, signed by a key pair. Boxed, as `Alibaba` is.
    SCloud(Box<SCloud>),
}

impl Providers for LiveProviders {
    type KeyApi = LiveKeyApi;

    async fn open(&self, secret: &ManagedSecret, signer: Option<Signer>) -> Result<LiveKeyApi> {
        let kind = secret.provider;
        match kind {
            Provider::Aws => {
                let path = self
                    .managed_user_path
                    .as_deref()
                    .ok_or_else(|| config::required(config::MANAGED_USER_PATH, kind.name()))?;
                Ok(LiveKeyApi::Aws(match &secret.account_id {
                    None => AwsIam::new(&self.aws, path),
                    Some(account) => {
                        AwsIam::in_account(&self.member_clients(account).await?, path, account)
                    }
                }))
            }
            Provider::Alibaba => {
                let pattern =
                    self.alibaba.user_pattern.clone().ok_or_else(|| {
                        config::required(config::ALIBABA_USER_PATTERN, kind.name())
                    })?;
                Ok(LiveKeyApi::Alibaba(Box::new(AlibabaRam::new(
                    self.alibaba_api()?,
                    pattern,
                    need_signer(signer, kind)?,
                ))))
            }
            Provider::SCloud => {
                let pattern =
                    self.scloud.user_pattern.clone().ok_or_else(|| {
                        config::required(config::SCLOUD_USER_PATTERN, kind.name())
                    })?;
                Ok(LiveKeyApi::SCloud(Box::new(SCloud::new(
                    self.scloud_api()?,
                    pattern,
                    self.scloud.key_limit,
                    need_signer(signer, kind)?,
                ))))
            }
        }
    }

    async fn whoami(&self, secret: &ManagedSecret, credential: &Credential) -> Result<String> {
        match secret.provider {
            Provider::Aws => {
                let account = secret.account_id.as_deref();
                self.aws.whoami(credential, account).await
            }
            Provider::Alibaba => alibaba::whoami(&self.alibaba_api()?, credential).await,
            Provider::SCloud => {
                let project = secret.project_id.as_deref();
                scloud::whoami(&self.scloud_api()?, credential, &secret.user_name, project).await
            }
        }
    }
}

impl KeyApi for LiveKeyApi {
    fn key_limit(&self) -> usize {
        match self {
            LiveKeyApi::Aws(p) => p.key_limit(),
            LiveKeyApi::Alibaba(p) => p.key_limit(),
            LiveKeyApi::SCloud(p) => p.key_limit(),
        }
    }

    async fn ensure_managed(&self, user: &str, owner: &str) -> Result<()> {
        match self {
            LiveKeyApi::Aws(p) => p.ensure_managed(user, owner).await,
            LiveKeyApi::Alibaba(p) => p.ensure_managed(user, owner).await,
            LiveKeyApi::SCloud(p) => p.ensure_managed(user, owner).await,
        }
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        match self {
            LiveKeyApi::Aws(p) => p.list_keys(user).await,
            LiveKeyApi::Alibaba(p) => p.list_keys(user).await,
            LiveKeyApi::SCloud(p) => p.list_keys(user).await,
        }
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        match self {
            LiveKeyApi::Aws(p) => p.create_key(user).await,
            LiveKeyApi::Alibaba(p) => p.create_key(user).await,
            LiveKeyApi::SCloud(p) => p.create_key(user).await,
        }
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self {
            LiveKeyApi::Aws(p) => p.deactivate_key(user, key_id).await,
            LiveKeyApi::Alibaba(p) => p.deactivate_key(user, key_id).await,
            LiveKeyApi::SCloud(p) => p.deactivate_key(user, key_id).await,
        }
    }

    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self {
            LiveKeyApi::Aws(p) => p.reactivate_key(user, key_id).await,
            LiveKeyApi::Alibaba(p) => p.reactivate_key(user, key_id).await,
            LiveKeyApi::SCloud(p) => p.reactivate_key(user, key_id).await,
        }
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self {
            LiveKeyApi::Aws(p) => p.delete_key(user, key_id).await,
            LiveKeyApi::Alibaba(p) => p.delete_key(user, key_id).await,
            LiveKeyApi::SCloud(p) => p.delete_key(user, key_id).await,
        }
    }

    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed> {
        match self {
            LiveKeyApi::Aws(p) => p.last_used(user, key_id).await,
            LiveKeyApi::Alibaba(p) => p.last_used(user, key_id).await,
            LiveKeyApi::SCloud(p) => p.last_used(user, key_id).await,
        }
    }
}
