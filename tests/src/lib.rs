//! Test harness for rekey: `moto_server` on loopback with signature
//! checking on, an admin signed in to it, helpers that play Secrets Manager,
//! captured logs, and a Lambda Runtime API harness ([`runtime`]) that runs
//! the built function binaries.

pub mod emulator;
pub mod proxy;
pub mod runtime;
pub mod sim;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_iam::types::StatusType;
use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use rekey::model::{
    AccessKey, Credential, KeyStatus, Provider, Sensitive, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};
use rekey::providers::LiveProviders;
use rekey::vault::SecretsManager;
use rekey::{Config, Rekey};
use serde_json::Value;

pub const REGION: &str = "us-east-1";
/// The IAM path of users the tests let rekey manage.
pub const MANAGED_PATH: &str = "/rekey/";
/// The default `REKEY_SECRET_PREFIX`: owning secrets are `rekey/<provider>/<user>`.
pub const OWNING_PREFIX: &str = "rekey/";
/// The default `REKEY_ADMIN_SECRET_PREFIX`.
pub const ADMIN_PREFIX: &str = "rekey/admin/";

/// The project's root (the workspace).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The Python with moto installed: `REKEY_PYTHON`, else the project's venv.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("REKEY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test (it creates the venv with moto)",
        venv.display()
    );
    venv
}

/// A running moto_server and the admin key that signs every request.
pub struct Moto {
    pub endpoint: String,
    pub admin: Credential,
    child: Mutex<Child>,
}

impl Moto {
    /// moto_server's process id (to measure its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }
}

/// The moto_server of this test process, started on first use. It stops
/// when the process exits (it watches its stdin, which this process holds).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start_moto(&[]))
}

/// Starts a server of `tests/support/` that prints one JSON line when it is
/// ready and stops when this process exits (it watches its stdin, which
/// this process holds open). Returns the process and that line.
fn start_support_server(script: &str, extra: &[&str]) -> (Child, Value) {
    let path = workspace_root().join("tests/support").join(script);
    let mut child = Command::new(python())
        .arg(path)
        .arg("--until-stdin-closes")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let stdout = child.stdout.take().expect("server stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read the first line of {script}: {e}"));
    let info: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{script} did not start ({e}): {line:?}"));
    // Keep stdin open for the life of the process: the server exits on EOF.
    let stdin = child.stdin.take().expect("server stdin");
    std::mem::forget(stdin);
    (child, info)
}

fn start_moto(extra: &[&str]) -> Moto {
    let (child, info) = start_support_server("moto_server.py", extra);
    Moto {
        endpoint: info["endpoint"].as_str().unwrap().to_owned(),
        admin: Credential {
            access_key_id: info["access_key_id"].as_str().unwrap().to_owned(),
            secret: Sensitive::new(info["secret_access_key"].as_str().unwrap()),
        },
        child: Mutex::new(child),
    }
}

/// Log lines captured from everything rekey logs in this process (JSON,
/// as in Lambda), so tests can check that no secret ever reaches a log.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buf.clone());
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Settings for tests: no waiting, AWS only (the other providers' settings
/// are their defaults, with no user pattern; see `emulator::Emulator::config`).
pub fn test_config() -> Config {
    let defaults = Config::from_lookup(|_| None).expect("the defaults are valid");
    Config {
        managed_user_path: Some(MANAGED_PATH.into()),
        deactivate_after: Duration::from_secs(24 * 3600),
        delete_after: Duration::from_secs(7 * 24 * 3600),
        idle_before_deactivate: Duration::ZERO,
        test_consecutive: 3,
        test_timeout: Duration::from_secs(3),
        test_spacing: Duration::ZERO,
        ..defaults
    }
}

pub type App = Rekey<SecretsManager, LiveProviders>;

/// One test's view of moto: admin clients and helpers. Build one per test
/// (SDK clients belong to the runtime that made them).
pub struct World {
    pub sdk: aws_config::SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
    /// Every secret value this test has seen; none may appear in a log.
    secrets_seen: Mutex<Vec<String>>,
}

impl World {
    pub async fn new() -> World {
        log_buffer();
        let moto = moto();
        let sdk = sdk_config(&moto.admin).await;
        World {
            iam: aws_sdk_iam::Client::new(&sdk),
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            sdk,
            secrets_seen: Mutex::new(vec![moto.admin.secret.expose().to_owned()]),
        }
    }

    /// The environment a function binary needs to reach moto as the admin.
    pub fn function_env(&self, config: &Config) -> Vec<(String, String)> {
        let moto = moto();
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let mut env: Vec<(&str, String)> = vec![
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", moto.admin.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                moto.admin.secret.expose().to_owned(),
            ),
            ("REKEY_DEACTIVATE_AFTER", d(config.deactivate_after)),
            ("REKEY_DELETE_AFTER", d(config.delete_after)),
            (
                "REKEY_IDLE_BEFORE_DEACTIVATE",
                d(config.idle_before_deactivate),
            ),
            (
                "REKEY_TEST_CONSECUTIVE",
                config.test_consecutive.to_string(),
            ),
            ("REKEY_TEST_TIMEOUT", d(config.test_timeout)),
            ("REKEY_TEST_SPACING", d(config.test_spacing)),
            (
                "REKEY_ALIBABA_RAM_ENDPOINT",
                config.alibaba.ram_endpoint.url().to_owned(),
            ),
            (
                "REKEY_ALIBABA_STS_ENDPOINT",
                config.alibaba.sts_endpoint.url().to_owned(),
            ),
            (
                "REKEY_SCLOUD_ENDPOINT",
                config.scloud.endpoint.url().to_owned(),
            ),
            (
                "REKEY_SCLOUD_KEY_LIMIT",
                config.scloud.key_limit.to_string(),
            ),
        ];
        if let Some(path) = &config.managed_user_path {
            env.push(("REKEY_MANAGED_USER_PATH", path.clone()));
        }
        if let Some(pattern) = &config.alibaba.user_pattern {
            env.push(("REKEY_ALIBABA_USER_PATTERN", pattern.as_str().to_owned()));
        }
        if let Some(pattern) = &config.scloud.user_pattern {
            env.push(("REKEY_SCLOUD_USER_PATTERN", pattern.as_str().to_owned()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The steps, as the functions build them, signed as the admin.
    pub fn app(&self, config: Config) -> App {
        Rekey::new(
            SecretsManager::new(&self.sdk),
            LiveProviders::new(&self.sdk, &config),
            config,
        )
    }

    /// The steps as the functions build them, but reaching moto through
    /// `proxy`.
    pub async fn app_via(&self, proxy: &proxy::Proxy, config: Config) -> App {
        let sdk = sdk_config_at(&proxy.endpoint, &moto().admin).await;
        Rekey::new(
            SecretsManager::new(&sdk),
            LiveProviders::new(&sdk, &config),
            config,
        )
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

    pub async fn delete_key(&self, user: &str, key_id: &str) {
        self.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
            .expect("DeleteAccessKey");
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
                    rekey::ownership::owning_name(OWNING_PREFIX, kind, user),
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

    pub async fn tag(&self, secret: &str, key: &str, value: &str) {
        self.sm
            .tag_resource()
            .secret_id(secret)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .expect("TagResource");
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

    fn saw(&self, secret: &str) {
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

pub fn version_with(stages: &BTreeMap<String, Vec<String>>, stage: &str) -> Option<String> {
    stages
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == stage))
        .map(|(v, _)| v.clone())
}

/// An SDK configuration signed by `credential`, pointed at moto.
pub async fn sdk_config(credential: &Credential) -> aws_config::SdkConfig {
    sdk_config_at(&moto().endpoint, credential).await
}

/// An SDK configuration signed by `credential`, pointed at `endpoint`, with
/// the functions' retry settings.
pub async fn sdk_config_at(endpoint: &str, credential: &Credential) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(rekey::sdk::retry_config())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(Credentials::new(
            &credential.access_key_id,
            credential.secret.expose(),
            None,
            None,
            "rekey-tests",
        ))
        .load()
        .await
}

impl World {
    /// Runs a built function binary under the local Runtime API with
    /// `config`, invoking it once per event, and checks that its logs are
    /// JSON and hold no secret value this test has seen.
    pub async fn run_function(
        &self,
        binary: &str,
        config: &Config,
        events: Vec<Value>,
    ) -> runtime::Run {
        let run = runtime::invoke(
            std::path::Path::new(binary),
            &self.function_env(config),
            events,
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
        .await;
        // The admin key signs the function's calls: it is in its environment,
        // never in its output.
        self.assert_no_secret_in(&run.logs, "the function's logs");
        for line in run.logs.lines().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<Value>(line).expect("log lines are JSON");
        }
        run
    }
}
