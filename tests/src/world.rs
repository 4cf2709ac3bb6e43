//! [`World`]: one test's view of moto, with admin clients and the helpers
//! that play an operator and Secrets Manager (users, keys, secrets,
//! rotations, stages), and the invariants every scenario ends with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_iam::types::StatusType;
use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use rekey::events::EventBridge;
use rekey::model::{
    AccessKey, Credential, KeyStatus, Provider, Sensitive, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};
use rekey::providers::LiveProviders;
use rekey::vault::SecretsManager;
use rekey::{Config, Rekey};
use serde_json::Value;

use crate::logs::{captured_logs, log_buffer};
use crate::{moto, proxy, sdk_config, sdk_config_at, OWNING_PREFIX};

/// The steps as the functions build them: Secrets Manager and the live providers.
pub type App = Rekey<SecretsManager, LiveProviders>;

/// One test's view of moto: admin clients and helpers. Build one per test
/// (SDK clients belong to the runtime that made them).
pub struct World {
    /// The SDK configuration signed as the admin, pointed at moto.
    pub sdk: aws_config::SdkConfig,
    /// IAM, as the admin.
    pub iam: aws_sdk_iam::Client,
    /// Secrets Manager, as the admin.
    pub sm: aws_sdk_secretsmanager::Client,
    /// Every secret value this test has seen; none may appear in a log.
    secrets_seen: Arc<Mutex<Vec<String>>>,
}

impl World {
    /// Starts moto and log capture if need be, and signs in as the admin.
    pub async fn new() -> World {
        log_buffer();
        let moto = moto();
        let sdk = sdk_config(&moto.admin).await;
        World {
            iam: aws_sdk_iam::Client::new(&sdk),
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            sdk,
            secrets_seen: Arc::new(Mutex::new(vec![moto.admin.secret.expose().to_owned()])),
        }
    }

    /// The same world, with IAM acting as an operator of member account
    /// `account` (through its test admin role); secrets stay in the
    /// central account, as rekey keeps them.
    pub async fn in_account(&self, account: &str) -> World {
        let out = aws_sdk_sts::Client::new(&self.sdk)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/rekey-test-admin"))
            .role_session_name("rekey-tests")
            .send()
            .await
            .expect("AssumeRole of the test admin role");
        let c = out.credentials().expect("credentials");
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        c.access_key_id(),
                        c.secret_access_key(),
                        Some(c.session_token().to_owned()),
                        None,
                        "rekey-tests-member",
                    ),
                ),
            )
            .build();
        World {
            iam: aws_sdk_iam::Client::new(&sdk),
            sm: self.sm.clone(),
            sdk: self.sdk.clone(),
            secrets_seen: self.secrets_seen.clone(),
        }
    }

    /// The steps, as the functions build them, signed as the admin.
    pub fn app(&self, config: Config) -> App {
        app_on(&self.sdk, config)
    }

    /// The steps as the functions build them, but reaching moto through
    /// `proxy`.
    pub async fn app_via(&self, proxy: &proxy::Proxy, config: Config) -> App {
        app_on(&sdk_config_at(&proxy.endpoint, &moto().admin).await, config)
    }

    /// A new IAM user with a unique name under `path`.
    pub async fn user(&self, path: &str) -> String {
        let name = format!("u-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.iam
            .create_user()
            .user_name(&name)
            .path(path)
            .send()
            .await
            .expect("CreateUser");
        name
    }

    /// A user under `path` with one key, and a managed secret holding it.
    pub async fn enrolled(&self, path: &str) -> (String, Credential, String) {
        let user = self.user(path).await;
        let key = self.create_key(&user).await;
        let secret = self.managed_secret(&user, Some(&key)).await;
        (user, key, secret)
    }

    /// A new access key for `user`, as an operator would make it.
    pub async fn create_key(&self, user: &str) -> Credential {
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .expect("CreateAccessKey");
        let k = out.access_key().unwrap();
        self.saw(k.secret_access_key());
        Credential {
            access_key_id: k.access_key_id().to_owned(),
            secret: Sensitive::new(k.secret_access_key()),
        }
    }

    /// Deactivates a key of `user`, as an operator would.
    pub async fn deactivate(&self, user: &str, key_id: &str) {
        self.iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(StatusType::Inactive)
            .send()
            .await
            .expect("UpdateAccessKey");
    }

    /// Deletes a key of `user`, as an operator would.
    pub async fn delete_key(&self, user: &str, key_id: &str) {
        self.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
            .expect("DeleteAccessKey");
    }

    /// The key `secret`'s AWSCURRENT holds, as `user`'s keys list it.
    pub async fn current_key(&self, secret: &str, user: &str) -> AccessKey {
        let id = self
            .value(secret, AWSCURRENT)
            .await
            .expect("an AWSCURRENT value")["AccessKeyId"]
            .as_str()
            .expect("AccessKeyId")
            .to_owned();
        self.keys(user)
            .await
            .into_iter()
            .find(|k| k.id == id)
            .expect("the AWSCURRENT key is one of the user's")
    }

    /// The user's keys, oldest first.
    pub async fn keys(&self, user: &str) -> Vec<AccessKey> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .expect("ListAccessKeys");
        let mut keys: Vec<AccessKey> = out
            .access_key_metadata()
            .iter()
            .map(|k| AccessKey {
                id: k.access_key_id().unwrap().to_owned(),
                status: if k.status() == Some(&StatusType::Active) {
                    KeyStatus::Active
                } else {
                    KeyStatus::Inactive
                },
                created: rekey::sdk::system_time(k.create_date()).unwrap(),
            })
            .collect();
        keys.sort_by_key(|k| k.created);
        keys
    }

    /// The ids of the user's keys, oldest first.
    pub async fn key_ids(&self, user: &str) -> Vec<String> {
        self.keys(user).await.into_iter().map(|k| k.id).collect()
    }

    /// A secret holding `value`, tagged as given, named as rekey's owning
    /// secret of the user the value names (`rekey/aws/alice`; a value that
    /// names no user gets a name of its own). An AWS user is also enrolled:
    /// its `rekey:owner` tag names the secret. Returns the secret's ARN.
    pub async fn secret(&self, value: &Value, tags: &[(&str, &str)]) -> String {
        let provider = value["Provider"].as_str().unwrap_or("aws");
        let (name, aws_user) = match (value["UserName"].as_str(), Provider::parse(provider)) {
            // A user name no secret name can hold (an invalid one) owns nothing.
            (Some(user), Some(kind))
                if !user.is_empty()
                    && user
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_+=.@-".contains(c)) =>
            {
                (
                    rekey::ownership::owning_name(
                        OWNING_PREFIX,
                        kind,
                        value["AccountId"].as_str(),
                        user,
                    ),
                    (kind == Provider::Aws).then_some(user),
                )
            }
            _ => (
                format!("rekey-test/{}", uuid::Uuid::new_v4().simple()),
                None,
            ),
        };
        let arn = self.secret_named(&name, value, tags).await;
        if let Some(user) = aws_user {
            self.enrol(user, &arn).await;
        }
        arn
    }

    /// A secret named `name` (which may own nothing), holding `value`.
    pub async fn secret_named(&self, name: &str, value: &Value, tags: &[(&str, &str)]) -> String {
        self.saw_value(value);
        let out = self
            .sm
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateSecret {name}: {e:?} (one secret owns each user: is there one already?)"
                )
            });
        out.arn().unwrap().to_owned()
    }

    /// Deletes a secret at once, freeing its name.
    pub async fn delete_secret(&self, secret: &str) {
        self.sm
            .delete_secret()
            .secret_id(secret)
            .force_delete_without_recovery(true)
            .send()
            .await
            .expect("DeleteSecret");
    }

    /// Enrols IAM user `user` to the secret `arn`, as an operator does:
    /// the `rekey:owner` tag. A user that does not exist is left alone.
    pub async fn enrol(&self, user: &str, arn: &str) {
        let tagged = self
            .iam
            .tag_user()
            .user_name(user)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(rekey::ownership::OWNER_TAG)
                    .value(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await;
        if let Err(e) = tagged {
            let e = e.into_service_error();
            assert!(e.is_no_such_entity_exception(), "TagUser {user}: {e:?}");
        }
    }

    /// A managed secret (`rekey:managed=true`) for `user`, with `key` if given.
    pub async fn managed_secret(&self, user: &str, key: Option<&Credential>) -> String {
        let mut value = serde_json::json!({ "UserName": user });
        if let Some(k) = key {
            value["AccessKeyId"] = k.access_key_id.clone().into();
            value["SecretAccessKey"] = k.secret.expose().into();
        }
        self.secret(&value, &[("rekey:managed", "true")]).await
    }

    /// Tags the secret `key=value`.
    pub async fn tag(&self, secret: &str, key: &str, value: &str) {
        self.sm
            .tag_resource()
            .secret_id(secret)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .expect("TagResource");
    }

    /// Removes the secret's tag `key` (as a person would by hand).
    pub async fn untag(&self, secret: &str, key: &str) {
        self.sm
            .untag_resource()
            .secret_id(secret)
            .tag_keys(key)
            .send()
            .await
            .expect("UntagResource");
    }

    async fn describe(
        &self,
        secret: &str,
    ) -> aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput {
        self.sm
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .expect("DescribeSecret")
    }

    /// The secret's tags.
    pub async fn tags(&self, secret: &str) -> BTreeMap<String, String> {
        self.describe(secret)
            .await
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap().to_owned(),
                    t.value().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Plays Secrets Manager starting a rotation: RotateSecret marks
    /// rotation enabled and adds a version for a new token; moto moves
    /// AWSCURRENT onto it, so the labels are put back where the real service
    /// leaves them (AWSCURRENT on the old version, AWSPENDING on the new,
    /// empty one). Returns the token.
    pub async fn start_rotation(&self, secret: &str) -> String {
        let before = self.stages(secret).await;
        let old = version_with(&before, AWSCURRENT).expect("a current version");
        let previous = version_with(&before, AWSPREVIOUS);
        let token = uuid::Uuid::new_v4().to_string();
        self.sm
            .rotate_secret()
            .secret_id(secret)
            .client_request_token(&token)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await
            .expect("RotateSecret");
        self.move_stage(secret, AWSCURRENT, Some(&old), Some(&token))
            .await;
        let after = self.stages(secret).await;
        if after
            .get(&token)
            .is_some_and(|s| s.iter().any(|s| s == AWSPREVIOUS))
        {
            self.move_stage(secret, AWSPREVIOUS, None, Some(&token))
                .await;
        }
        self.move_stage(secret, AWSPENDING, Some(&token), None)
            .await;
        if let Some(p) = previous {
            self.move_stage(secret, AWSPREVIOUS, Some(&p), None).await;
        }
        token
    }

    /// UpdateSecretVersionStage: moves `stage` to version `to` and off version `from`.
    pub async fn move_stage(
        &self,
        secret: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) {
        self.sm
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .expect("UpdateSecretVersionStage");
    }

    /// Version id -> stages, without versions that carry no stage.
    pub async fn stages(&self, secret: &str) -> BTreeMap<String, Vec<String>> {
        self.describe(secret)
            .await
            .version_ids_to_stages()
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        v.sort();
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The JSON value of the version carrying `stage`.
    pub async fn value(&self, secret: &str, stage: &str) -> Option<Value> {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .send()
            .await
            .ok()?;
        let v: Value = serde_json::from_str(out.secret_string()?).ok()?;
        self.saw_value(&v);
        Some(v)
    }

    /// The credential in the AWSCURRENT version (of any provider).
    pub async fn current_credential(&self, secret: &str) -> Option<Credential> {
        let v = self.value(secret, AWSCURRENT).await?;
        let half = v["SecretAccessKey"]
            .as_str()
            .or(v["AccessKeySecret"].as_str())?;
        Some(Credential {
            access_key_id: v["AccessKeyId"].as_str()?.to_owned(),
            secret: Sensitive::new(half),
        })
    }

    /// Whether `credential` authenticates (STS GetCallerIdentity), and as whom.
    pub async fn whoami(&self, credential: &Credential) -> Option<String> {
        let sdk = sdk_config(credential).await;
        let out = aws_sdk_sts::Client::new(&sdk)
            .get_caller_identity()
            .send()
            .await
            .ok()?;
        out.arn().map(str::to_owned)
    }

    /// The invariants every scenario ends with: the user has at most two
    /// keys, the AWSCURRENT key (if any) authenticates as the user, and no
    /// secret value this test has seen appears in the captured logs.
    pub async fn assert_invariants(&self, secret: &str, user: &str) {
        let keys = self.keys(user).await;
        assert!(keys.len() <= 2, "user {user} has {} keys", keys.len());
        if let Some(cred) = self.current_credential(secret).await {
            let arn = self.whoami(&cred).await;
            assert!(
                arn.as_deref()
                    .is_some_and(|a| a.ends_with(&format!("/{user}"))),
                "AWSCURRENT key {} does not authenticate as {user}: {arn:?}",
                cred.access_key_id
            );
            assert!(
                keys.iter()
                    .any(|k| k.id == cred.access_key_id && k.status == KeyStatus::Active),
                "AWSCURRENT key {} is not an active key of {user}",
                cred.access_key_id
            );
        }
        self.assert_no_secret_in(&captured_logs(), "the logs");
    }

    /// Fails if any secret value this test has seen appears in `text`.
    pub fn assert_no_secret_in(&self, text: &str, what: &str) {
        for s in self.secrets_seen.lock().unwrap().iter() {
            assert!(
                !text.contains(s.as_str()),
                "a secret value appears in {what}"
            );
        }
    }

    pub(crate) fn saw(&self, secret: &str) {
        if !secret.is_empty() {
            self.secrets_seen.lock().unwrap().push(secret.to_owned());
        }
    }

    fn saw_value(&self, v: &Value) {
        for field in ["SecretAccessKey", "AccessKeySecret"] {
            if let Some(s) = v[field].as_str() {
                self.saw(s);
            }
        }
    }
}

/// The version that carries `stage`, in [`World::stages`]' map.
pub fn version_with(stages: &BTreeMap<String, Vec<String>>, stage: &str) -> Option<String> {
    stages
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == stage))
        .map(|(v, _)| v.clone())
}

/// The steps as the functions build them, on the AWS configuration `sdk`.
pub(crate) fn app_on(sdk: &aws_config::SdkConfig, config: Config) -> App {
    let events = EventBridge::new(sdk, &config.event_bus);
    Rekey::new(
        SecretsManager::new(sdk),
        LiveProviders::new(sdk, &config),
        config,
    )
    .with_events(events)
}
