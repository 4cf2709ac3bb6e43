//! AWS IAM access keys; new keys are tested with STS GetCallerIdentity.

use aws_config::retry::RetryConfig;
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_iam::types::StatusType;
use aws_sdk_iam::Client as Iam;
use aws_sdk_sts::Client as Sts;

use crate::error::{Error, Result};
use crate::model::{AccessKey, Credential, KeyStatus, LastUsed, Sensitive};
use crate::ownership;
use crate::ports::KeyApi;
use crate::sdk::{code, service_error, system_time};

const SERVICE: &str = "IAM";

/// The IAM client and the STS configuration, built once per process
/// (no network call).
#[derive(Clone, Debug)]
pub struct AwsClients {
    iam: Iam,
    /// The base STS configuration; each probe adds the key under test.
    sts: aws_sdk_sts::Config,
}

impl AwsClients {
    /// The IAM and STS clients, built from the function's AWS
    /// configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        AwsClients {
            iam: Iam::new(config),
            sts: aws_sdk_sts::Config::from(config),
        }
    }

    /// The clients of a member account: `role_arn` assumed with
    /// `external_id`, signed by the function's own credentials, and when
    /// those credentials expire. They are kept in memory only.
    pub async fn assume(
        config: &aws_config::SdkConfig,
        account: &str,
        role_arn: &str,
        external_id: &str,
    ) -> Result<(AwsClients, SystemTime)> {
        let (member, expires) = assumed(config, account, role_arn, Some(external_id)).await?;
        Ok((AwsClients::new(&member), expires))
    }

    /// STS GetCallerIdentity signed with `credential`: the IAM user name it
    /// acts as, or the whole ARN when it is not an IAM user or not one of
    /// `account` (when given: a member account's key must authenticate in
    /// that account).
    pub async fn whoami(&self, credential: &Credential, account: Option<&str>) -> Result<String> {
        let config = self
            .sts
            .to_builder()
            .credentials_provider(Credentials::new(
                &credential.access_key_id,
                credential.secret.expose(),
                None,
                None,
                "rekey-probe",
            ))
            .build();
        let out = Sts::from_conf(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| service_error("STS", "GetCallerIdentity", e))?;
        let arn = out.arn().unwrap_or_default();
        // arn:aws:iam::123456789012:user/path/name -> name, when in the
        // account the secret names (else the whole ARN, which no user
        // name equals).
        let arn_account = arn.split(':').nth(4);
        if account.is_some_and(|a| Some(a) != arn_account) {
            return Ok(arn.to_owned());
        }
        match arn.split_once(":user/") {
            Some((_, path_and_name)) => Ok(path_and_name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()),
            None => Ok(arn.to_owned()),
        }
    }
}

/// `config` acting as `role_arn` (assumed with `external_id`, if any, by
/// `config`'s own credentials), and when that ends: a member account's
/// role for the functions, an operator's role for the `rekey` command.
/// The credentials are kept in memory only.
pub async fn assumed(
    config: &aws_config::SdkConfig,
    account: &str,
    role_arn: &str,
    external_id: Option<&str>,
) -> Result<(aws_config::SdkConfig, SystemTime)> {
    let out = Sts::new(config)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("rekey")
        .set_external_id(external_id.map(str::to_owned))
        .send()
        .await
        .map_err(|e| match code(&e) {
            Some("AccessDenied" | "NoSuchEntity" | "InvalidClientTokenId") => {
                Error::MemberAccountUnreachable {
                    account: account.to_owned(),
                    role_arn: role_arn.to_owned(),
                    reason: service_error("STS", "AssumeRole", e).to_string(),
                }
            }
            // The answer carries the role's credentials.
            _ => service_error("STS", "AssumeRole", e).withhold_message(),
        })?;
    let unusable = || Error::Service {
        service: "STS",
        operation: "AssumeRole",
        code: "EmptyResponse".into(),
        message: "the response held no credentials".into(),
        retryable: false,
    };
    let creds = out.credentials().ok_or_else(unusable)?;
    let expires = system_time(Some(creds.expiration())).ok_or_else(unusable)?;
    let credentials = Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_owned()),
        Some(expires),
        "rekey-assumed",
    );
    let assumed = config
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    Ok((assumed, expires))
}

/// IAM key management for users under one path, signed by the function's
/// own credentials.
#[derive(Clone, Debug)]
pub struct AwsIam {
    iam: Iam,
    managed_path: String,
    /// The member account it acts in, if not the function's own.
    account: Option<String>,
}

impl AwsIam {
    /// IAM key management for the users under `managed_path`
    /// (e.g. `/rekey/`).
    pub fn new(clients: &AwsClients, managed_path: &str) -> Self {
        AwsIam {
            iam: clients.iam.clone(),
            managed_path: managed_path.to_owned(),
            account: None,
        }
    }

    /// The same, acting in member account `account` through `clients`
    /// (its member role's).
    pub fn in_account(clients: &AwsClients, managed_path: &str, account: &str) -> Self {
        AwsIam {
            account: Some(account.to_owned()),
            ..AwsIam::new(clients, managed_path)
        }
    }
}

fn user_not_found(user: &str) -> Error {
    Error::UserNotFound {
        user: user.to_owned(),
    }
}

impl KeyApi for AwsIam {
    fn key_limit(&self) -> usize {
        2
    }

    async fn ensure_managed(&self, user: &str, owner: &str) -> Result<()> {
        let out = self
            .iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| match code(&e) {
                Some("NoSuchEntity") => user_not_found(user),
                // The deployed role may read only users under the managed
                // path: a user elsewhere is refused by IAM itself.
                Some("AccessDenied") => Error::UserNotManaged {
                    user: user.to_owned(),
                    reason: match &self.account {
                        None => format!(
                            "rekey may not read it (its role covers only users under REKEY_MANAGED_USER_PATH {}); move the user under that path",
                            self.managed_path
                        ),
                        Some(account) => format!(
                            "rekey's member role in account {account} may not read it: the role covers only users under REKEY_MANAGED_USER_PATH {} (move the user under that path), or it lacks the member template's policy (deploy it there)",
                            self.managed_path
                        ),
                    },
                },
                _ => service_error(SERVICE, "GetUser", e),
            })?;
        let path = out.user().map(|u| u.path()).unwrap_or("/");
        if path.starts_with(&self.managed_path) {
            let tag = out
                .user()
                .map(|u| u.tags())
                .unwrap_or_default()
                .iter()
                .find(|t| t.key() == ownership::OWNER_TAG)
                .map(|t| t.value());
            match ownership::bad_owner_tag(user, tag, owner) {
                None => Ok(()),
                Some(reason) => Err(Error::SecretNotOwner {
                    secret_id: owner.to_owned(),
                    reason,
                }),
            }
        } else {
            Err(Error::UserNotManaged {
                user: user.to_owned(),
                reason: format!(
                    "its IAM path {path} is outside REKEY_MANAGED_USER_PATH {}; move the user under that path or change the setting",
                    self.managed_path
                ),
            })
        }
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        let mut pages = self
            .iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| match code(&e) {
                Some("NoSuchEntity") => user_not_found(user),
                _ => service_error(SERVICE, "ListAccessKeys", e),
            })?;
            for k in page.access_key_metadata() {
                let Some(id) = k.access_key_id() else {
                    continue;
                };
                keys.push(AccessKey {
                    id: id.to_owned(),
                    status: match k.status() {
                        Some(StatusType::Active) => KeyStatus::Active,
                        _ => KeyStatus::Inactive,
                    },
                    created: system_time(k.create_date()).unwrap_or(std::time::UNIX_EPOCH),
                });
            }
        }
        Ok(keys)
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        // Not retried by the SDK: after a lost answer a retry would make a
        // second key. The step fails instead; the key it may have made is an
        // orphan that the next attempt reclaims.
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| match code(&e) {
                Some("LimitExceeded") => Error::KeyLimitReached(format!(
                    "user {user} reached IAM's limit of 2 access keys while rekey was creating one (another process created a key meanwhile); nothing was changed, rotate again"
                )),
                Some("NoSuchEntity") => user_not_found(user),
                // The answer carries the new secret.
                _ => service_error(SERVICE, "CreateAccessKey", e).withhold_message(),
            })?;
        let key = out.access_key().ok_or_else(|| Error::Service {
            service: SERVICE,
            operation: "CreateAccessKey",
            code: "EmptyResponse".into(),
            message: "the response held no access key".into(),
            retryable: false,
        })?;
        Ok(Credential {
            access_key_id: key.access_key_id().to_owned(),
            secret: Sensitive::new(key.secret_access_key()),
        })
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self
            .iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(StatusType::Inactive)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(service_error(SERVICE, "UpdateAccessKey", e)),
        }
    }

    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        self.iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(StatusType::Active)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service_error(SERVICE, "UpdateAccessKey", e))
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        match self
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(service_error(SERVICE, "DeleteAccessKey", e)),
        }
    }

    async fn last_used(&self, _user: &str, key_id: &str) -> Result<LastUsed> {
        let out = self
            .iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| service_error(SERVICE, "GetAccessKeyLastUsed", e))?;
        Ok(match out.access_key_last_used() {
            Some(used) => match system_time(used.last_used_date()) {
                Some(when) => LastUsed::At {
                    when,
                    service: Some(used.service_name().to_owned())
                        .filter(|s| !s.is_empty() && s != "N/A"),
                },
                None => LastUsed::Never,
            },
            None => LastUsed::Never,
        })
    }
}
