//! Key provider adapters, and the registry that opens the right one for a
//! secret.

mod alibaba;
mod aws;

use std::sync::OnceLock;

pub use alibaba::{sign as alibaba_sign, AlibabaRam};
pub use aws::{AwsClients, AwsIam};

use crate::config::{self, AlibabaSettings, Config};
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::model::{AccessKey, Credential, LastUsed, ProviderKind};
use crate::ports::{KeyProvider, Providers, Signer};

/// Every provider, as deployed: clients are built once per process, the
/// HTTP client of the non-AWS providers on first use.
#[derive(Debug)]
pub struct Registry {
    aws: AwsClients,
    managed_user_path: Option<String>,
    alibaba: AlibabaSettings,
    http: OnceLock<HttpClient>,
}

impl Registry {
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Registry {
            aws: AwsClients::new(sdk),
            managed_user_path: config.managed_user_path.clone(),
            alibaba: config.alibaba.clone(),
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<HttpClient> {
        if let Some(client) = self.http.get() {
            return Ok(client.clone());
        }
        let client = HttpClient::new().map_err(|e| Error::Service {
            service: "rekey",
            operation: "TLS set-up",
            code: "NoRootCertificates".into(),
            message: format!("the system's root certificates could not be loaded: {e}"),
            retryable: false,
        })?;
        Ok(self.http.get_or_init(|| client).clone())
    }

    fn alibaba_api(&self) -> Result<alibaba::Api> {
        Ok(alibaba::Api::new(self.http()?, &self.alibaba))
    }
}

/// The provider a secret names.
#[derive(Clone, Debug)]
pub enum Provider {
    Aws(AwsIam),
    /// Boxed: its client and user pattern make it large.
    Alibaba(Box<AlibabaRam>),
}

impl Providers for Registry {
    type Provider = Provider;

    fn open(&self, kind: ProviderKind, signer: Option<Signer>) -> Result<Provider> {
        match kind {
            ProviderKind::Aws => {
                let path = self
                    .managed_user_path
                    .as_deref()
                    .ok_or_else(|| config::required(config::MANAGED_USER_PATH, kind.name()))?;
                Ok(Provider::Aws(AwsIam::new(&self.aws, path)))
            }
            ProviderKind::Alibaba => {
                let pattern =
                    self.alibaba.user_pattern.clone().ok_or_else(|| {
                        config::required(config::ALIBABA_USER_PATTERN, kind.name())
                    })?;
                let signer = signer.ok_or_else(|| Error::Service {
                    service: "rekey",
                    operation: "open provider",
                    code: "NoSigner".into(),
                    message: "no key pair was given to sign Alibaba RAM calls".into(),
                    retryable: false,
                })?;
                Ok(Provider::Alibaba(Box::new(AlibabaRam::new(
                    self.alibaba_api()?,
                    pattern,
                    signer,
                ))))
            }
        }
    }

    async fn whoami(&self, kind: ProviderKind, credential: &Credential) -> Result<String> {
        match kind {
            ProviderKind::Aws => self.aws.whoami(credential).await,
            ProviderKind::Alibaba => alibaba::whoami(&self.alibaba_api()?, credential).await,
        }
    }
}

impl KeyProvider for Provider {
    fn key_limit(&self) -> usize {
        match self {
            Provider::Aws(p) => p.key_limit(),
            Provider::Alibaba(p) => p.key_limit(),
        }
    }

    async fn ensure_managed(&self, user: &str) -> Result<()> {
        match self {
            Provider::Aws(p) => p.ensure_managed(user).await,
            Provider::Alibaba(p) => p.ensure_managed(user).await,
        }
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        match self {
            Provider::Aws(p) => p.list_keys(user).await,
            Provider::Alibaba(p) => p.list_keys(user).await,
        }
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        match self {
            Provider::Aws(p) => p.create_key(user).await,
            Provider::Alibaba(p) => p.create_key(user).await,
        }
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self {
            Provider::Aws(p) => p.deactivate_key(user, key_id).await,
            Provider::Alibaba(p) => p.deactivate_key(user, key_id).await,
        }
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self {
            Provider::Aws(p) => p.delete_key(user, key_id).await,
            Provider::Alibaba(p) => p.delete_key(user, key_id).await,
        }
    }

    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed> {
        match self {
            Provider::Aws(p) => p.last_used(user, key_id).await,
            Provider::Alibaba(p) => p.last_used(user, key_id).await,
        }
    }
}
