//! The vault on AWS Secrets Manager.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use aws_sdk_secretsmanager::Client;

use crate::error::{Error, Result};
use crate::model::Sensitive;
use crate::ports::{SecretInfo, SecretPage, SecretVersion, Select, Vault};
use crate::records::TAG_MANAGED;
use crate::sdk::{code, service_error, system_time};

const SERVICE: &str = "Secrets Manager";

/// Secrets per ListSecrets page: the most Secrets Manager returns.
const LIST_PAGE_SIZE: i32 = 100;

/// A secret's tags as a map.
fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

/// Version id -> its stages.
fn stages(map: Option<&HashMap<String, Vec<String>>>) -> BTreeMap<String, Vec<String>> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The [`Vault`] on AWS Secrets Manager, through the AWS
/// SDK.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    /// A Secrets Manager client from the function's AWS
    /// configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        SecretsManager {
            client: Client::new(config),
        }
    }
}

fn not_found(secret_id: &str) -> Error {
    Error::SecretNotFound {
        secret_id: secret_id.to_owned(),
    }
}

impl Vault for SecretsManager {
    async fn describe(&self, secret_id: &str) -> Result<SecretInfo> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| match code(&e) {
                Some("ResourceNotFoundException") => not_found(secret_id),
                _ => service_error(SERVICE, "DescribeSecret", e),
            })?;
        if out.deleted_date().is_some() {
            return Err(not_found(secret_id));
        }
        Ok(SecretInfo {
            arn: out.arn().unwrap_or(secret_id).to_owned(),
            name: out.name().unwrap_or(secret_id).to_owned(),
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            tags: tags(out.tags()),
            versions: stages(out.version_ids_to_stages()),
        })
    }

    async fn read(&self, secret_id: &str, which: Select<'_>) -> Result<Option<SecretVersion>> {
        let req = self.client.get_secret_value().secret_id(secret_id);
        let req = match which {
            Select::Stage(stage) => req.version_stage(stage),
            Select::Version { id, stage } => req.version_id(id).version_stage(stage),
        };
        let out = match req.send().await {
            Ok(out) => out,
            // No such version or stage, or a version without a value.
            Err(e) if code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            // A version that does not carry the stage asked for (its label
            // moved since it was described): moto answers so.
            Err(e)
                if code(&e) == Some("InvalidRequestException")
                    && matches!(which, Select::Version { .. })
                    && e.as_service_error()
                        .and_then(|s| s.meta().message())
                        .is_some_and(|m| m.contains("VersionStage")) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(service_error(SERVICE, "GetSecretValue", e)),
        };
        let Some(value) = out.secret_string() else {
            return Ok(None);
        };
        Ok(Some(SecretVersion {
            version_id: out.version_id().unwrap_or_default().to_owned(),
            created: system_time(out.created_date()).unwrap_or(std::time::UNIX_EPOCH),
            value: Sensitive::new(value),
        }))
    }

    async fn put_pending(&self, secret_id: &str, token: &str, value: &Sensitive) -> Result<()> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose())
            .version_stages(crate::model::AWSPENDING)
            .send()
            .await
            // The request carries the new secret.
            .map_err(|e| service_error(SERVICE, "PutSecretValue", e).withhold_message())?;
        Ok(())
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<()> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(move_to.map(str::to_owned))
            .set_remove_from_version_id(remove_from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| service_error(SERVICE, "UpdateSecretVersionStage", e))?;
        Ok(())
    }

    async fn tag(&self, secret_id: &str, tags: &[(String, String)]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.client
            .tag_resource()
            .secret_id(secret_id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| service_error(SERVICE, "TagResource", e))?;
        Ok(())
    }

    async fn untag(&self, secret_id: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.client
            .untag_resource()
            .secret_id(secret_id)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| service_error(SERVICE, "UntagResource", e))?;
        Ok(())
    }

    async fn list_page(&self, next_token: Option<&str>) -> Result<SecretPage> {
        let page = self
            .client
            .list_secrets()
            .max_results(LIST_PAGE_SIZE)
            .set_next_token(next_token.map(str::to_owned))
            // By the tag's key alone (a prefix match): every secret that
            // carries `rekey:managed`, whatever its value, so that a near
            // miss (`True`, ` true`, `yes`) is listed and reported rather
            // than never seen. Which are managed (exactly `true`) is
            // decided from each secret's tags (`records::enrolment`),
            // never here. A value filter could not say "anything" and
            // "exactly true" at once: it is a prefix match on any tag.
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(TAG_MANAGED)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| service_error(SERVICE, "ListSecrets", e))?;
        let secrets = page
            .secret_list()
            .iter()
            .filter(|s| s.deleted_date().is_none())
            .filter_map(|s| {
                let arn = s.arn().or(s.name())?;
                Some(SecretInfo {
                    arn: arn.to_owned(),
                    name: s.name().unwrap_or(arn).to_owned(),
                    rotation_enabled: s.rotation_enabled().unwrap_or(false),
                    tags: tags(s.tags()),
                    versions: stages(s.secret_versions_to_stages()),
                })
            })
            .collect();
        Ok(SecretPage {
            secrets,
            next_token: page.next_token().map(str::to_owned),
        })
    }
}
