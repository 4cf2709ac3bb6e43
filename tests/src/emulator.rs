//! The provider emulators (`tests/support/alibaba_emulator.py` for Alibaba
//! RAM + STS, `scloud_emulator.py` for SCloud; each checks every signature
//! with the provider's official Python SDK), and the test's operator view of
//! them: users, keys, faults and the log of the API requests seen. Both
//! share one control API (`tests/support/keystore.py`).

use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rekey::config::{AlibabaSettings, Endpoint, SCloudSettings, UserPattern};
use rekey::model::{AccessKey, Credential, KeyStatus, Provider, Sensitive};
use rekey::Config;
use serde_json::{json, Value};

use crate::{start_support_server, test_config, World};

/// The users the tests let rekey manage: `REKEY_ALIBABA_USER_PATTERN` and
/// `REKEY_SCLOUD_USER_PATTERN`.
pub const USER_PATTERN: &str = "ops-[0-9a-f]+";

/// A running emulator of `kind` and its account's root key.
pub struct Emulator {
    /// The provider it plays (Alibaba or SCloud).
    pub kind: Provider,
    /// Its base URL, e.g. `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The account's root key, which may manage every user's keys.
    pub root: Credential,
    /// The keys a user may have.
    pub key_limit: usize,
    child: Mutex<Child>,
}

impl Drop for Emulator {
    /// A test's own emulator stops with it (the shared ones live as long as
    /// the test process).
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The emulator of `kind` shared by this test process, started on first use.
pub fn emulator(kind: Provider) -> &'static Emulator {
    static ALIBABA: OnceLock<Emulator> = OnceLock::new();
    static SCLOUD: OnceLock<Emulator> = OnceLock::new();
    match kind {
        Provider::Alibaba => ALIBABA.get_or_init(|| Emulator::start(kind)),
        Provider::SCloud => SCLOUD.get_or_init(|| Emulator::start(kind)),
        Provider::Aws => panic!("AWS is played by moto"),
    }
}

/// One API request the emulator saw.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    /// The API action, e.g. `CreateAccessKey`.
    pub action: String,
    /// The AccessKeyId that signed it.
    pub signer: String,
    /// The user the request names, if any.
    pub user_name: Option<String>,
    /// `OK` or the error code answered.
    pub code: String,
    /// How it was signed, where the provider has several ways (Alibaba:
    /// `v3` or `v1`).
    pub signature: Option<String>,
}

impl Request {
    /// Whether it created, changed the status of or deleted a key, and
    /// succeeded.
    pub fn changes_keys(&self) -> bool {
        self.code == "OK"
            && matches!(
                self.action.as_str(),
                "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey"
            )
    }
}

impl Emulator {
    /// A new emulator of its own (for tests that set faults).
    pub fn start(kind: Provider) -> Emulator {
        Self::start_with(kind, &[])
    }

    /// A new emulator of its own, started with `args`.
    pub fn start_with(kind: Provider, args: &[&str]) -> Emulator {
        let script = match kind {
            Provider::Alibaba => "alibaba_emulator.py",
            Provider::SCloud => "scloud_emulator.py",
            Provider::Aws => panic!("AWS is played by moto"),
        };
        let (child, info) = start_support_server(script, args);
        Emulator {
            kind,
            key_limit: info["key_limit"].as_u64().unwrap() as usize,
            endpoint: info["endpoint"].as_str().unwrap().to_owned(),
            root: Credential {
                access_key_id: info["access_key_id"].as_str().unwrap().to_owned(),
                secret: Sensitive::new(info["access_key_secret"].as_str().unwrap()),
            },
            child: Mutex::new(child),
        }
    }

    /// The test settings with this provider at `endpoint` (the emulator, or
    /// a proxy in front of it) and the users of [`USER_PATTERN`] managed.
    pub fn config_at(&self, endpoint: &str) -> Config {
        let pattern = Some(UserPattern::new(self.pattern_setting(), USER_PATTERN).unwrap());
        let endpoint = Endpoint::new("test", endpoint).unwrap();
        let mut config = test_config();
        match self.kind {
            Provider::Alibaba => {
                config.alibaba = AlibabaSettings {
                    user_pattern: pattern,
                    ram_endpoint: endpoint.clone(),
                    sts_endpoint: endpoint,
                    signature: test_config().alibaba.signature,
                }
            }
            Provider::SCloud => {
                config.scloud = SCloudSettings {
                    user_pattern: pattern,
                    endpoint,
                    key_limit: 2,
                }
            }
            Provider::Aws => unreachable!(),
        }
        config
    }

    /// The test settings with this provider at this emulator.
    pub fn config(&self) -> Config {
        self.config_at(&self.endpoint)
    }

    /// The setting that names the users of this provider rekey manages.
    pub fn pattern_setting(&self) -> &'static str {
        match self.kind {
            Provider::Alibaba => rekey::config::ALIBABA_USER_PATTERN,
            _ => rekey::config::SCLOUD_USER_PATTERN,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/_emulator/{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = client.request(request).await.expect("emulator answers");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).expect("emulator answers JSON"),
        )
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call("POST", path, body).await;
        assert_eq!(status, 200, "emulator {path}: {answer}");
        answer
    }

    /// A new user matching [`USER_PATTERN`]; with `self_manage` it may
    /// manage its own keys (the policy self-rotation needs).
    pub async fn user(&self, self_manage: bool) -> String {
        let name = format!("ops-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.named_user(&name, self_manage).await;
        name
    }

    /// Creates user `name`; with `self_manage` it may manage its own keys.
    pub async fn named_user(&self, name: &str, self_manage: bool) {
        self.post(
            "users",
            json!({"UserName": name, "SelfManage": self_manage}),
        )
        .await;
    }

    /// A new user matching [`USER_PATTERN`] whose keys may manage every
    /// user's keys (an administrator's policy): an admin user.
    pub async fn admin_user(&self) -> String {
        let name = format!("ops-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.post("users", json!({"UserName": name, "Admin": true}))
            .await;
        name
    }

    /// A new key for `user`, made by the operator.
    pub async fn create_key(&self, user: &str) -> Credential {
        let out = self.post("keys", json!({ "UserName": user })).await;
        Credential {
            access_key_id: out["AccessKeyId"].as_str().unwrap().to_owned(),
            secret: Sensitive::new(out["AccessKeySecret"].as_str().unwrap()),
        }
    }

    /// Activates or deactivates a key, as an operator would.
    pub async fn set_status(&self, key_id: &str, status: KeyStatus) {
        let status = match status {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        };
        self.post(
            "keys/status",
            json!({"AccessKeyId": key_id, "Status": status}),
        )
        .await;
    }

    /// Records a use of the key, now.
    pub async fn use_key(&self, key_id: &str) {
        self.post("keys/use", json!({ "AccessKeyId": key_id }))
            .await;
    }

    /// The user the credential authenticates as, or why it does not.
    pub async fn check(&self, credential: &Credential) -> Result<String, String> {
        let out = self
            .post(
                "check",
                json!({
                    "AccessKeyId": credential.access_key_id,
                    "AccessKeySecret": credential.secret.expose(),
                }),
            )
            .await;
        match out["User"].as_str() {
            Some(user) => Ok(user.to_owned()),
            None => Err(out["Error"].to_string()),
        }
    }

    /// Throttle the next `throttle` requests; refuse keys younger than
    /// `unready_seconds`.
    pub async fn faults(&self, throttle: u32, unready_seconds: f64) {
        self.post(
            "faults",
            json!({"Throttle": throttle, "UnreadySeconds": unready_seconds}),
        )
        .await;
    }

    /// The user's keys, oldest first.
    pub async fn keys(&self, user: &str) -> Vec<AccessKey> {
        let (status, out) = self
            .call("GET", &format!("users/{user}/keys"), Value::Null)
            .await;
        assert_eq!(status, 200);
        out.as_array()
            .unwrap()
            .iter()
            .map(|k| AccessKey {
                id: k["AccessKeyId"].as_str().unwrap().to_owned(),
                status: if k["Status"] == "Active" {
                    KeyStatus::Active
                } else {
                    KeyStatus::Inactive
                },
                created: humantime::parse_rfc3339(k["CreateDate"].as_str().unwrap())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            })
            .collect()
    }

    /// The ids of `user`'s keys.
    pub async fn key_ids(&self, user: &str) -> Vec<String> {
        self.keys(user).await.into_iter().map(|k| k.id).collect()
    }

    /// Every API request seen so far.
    pub async fn log(&self) -> Vec<Request> {
        let (status, out) = self.call("GET", "log", Value::Null).await;
        assert_eq!(status, 200);
        serde_json::from_value(out).unwrap()
    }

    /// The requests about `user` seen after the first `since` requests.
    pub async fn requests_since(&self, since: usize, user: &str) -> Vec<Request> {
        self.log()
            .await
            .into_iter()
            .skip(since)
            .filter(|r| r.user_name.as_deref() == Some(user))
            .collect()
    }

    /// The requests since `since` that created, changed or deleted one of
    /// `user`'s keys (and succeeded).
    pub async fn key_changes_since(&self, since: usize, user: &str) -> Vec<Request> {
        let mut requests = self.requests_since(since, user).await;
        requests.retain(Request::changes_keys);
        requests
    }
}

impl World {
    /// A managed secret of the emulator's provider for `user`, holding `key`
    /// if given and naming `admin` as its AdminSecretId if given. Returns
    /// its ARN.
    pub async fn provider_secret(
        &self,
        emulator: &Emulator,
        user: &str,
        key: Option<&Credential>,
        admin: Option<&str>,
    ) -> String {
        let mut value = json!({"Provider": emulator.kind.name(), "UserName": user});
        if let Some(k) = key {
            value["AccessKeyId"] = k.access_key_id.clone().into();
            value["AccessKeySecret"] = k.secret.expose().into();
        }
        if let Some(admin) = admin {
            value["AdminSecretId"] = admin.into();
        }
        self.secret(&value, &[("rekey:managed", "true")]).await
    }

    /// An admin secret holding the emulator account's root key pair (not
    /// managed by rekey). Returns its ARN.
    pub async fn admin_secret(&self, emulator: &Emulator) -> String {
        self.admin_secret_holding(&json!({
            "AccessKeyId": emulator.root.access_key_id,
            "AccessKeySecret": emulator.root.secret.expose(),
        }))
        .await
    }

    /// A secret under the admin prefix holding `value`. Returns its ARN.
    pub async fn admin_secret_holding(&self, value: &Value) -> String {
        let name = format!("{}{}", crate::ADMIN_PREFIX, uuid::Uuid::new_v4().simple());
        self.secret_named(&name, value, &[]).await
    }

    /// An admin user with one key, and the managed admin secret that owns
    /// it (`<admin prefix><provider>/<user>`, signed by its own key): rekey
    /// rotates it. Returns the user, its key and the secret's ARN.
    pub async fn managed_admin(&self, emulator: &Emulator) -> (String, Credential, String) {
        let user = emulator.admin_user().await;
        let key = emulator.create_key(&user).await;
        self.saw_credential(&key);
        let name = rekey::ownership::admin_owning_name(crate::ADMIN_PREFIX, emulator.kind, &user);
        let value = json!({
            "Provider": emulator.kind.name(),
            "UserName": user,
            "AccessKeyId": key.access_key_id,
            "AccessKeySecret": key.secret.expose(),
        });
        let arn = self
            .secret_named(&name, &value, &[("rekey:managed", "true")])
            .await;
        (user, key, arn)
    }

    /// Registers a secret value this test has seen (none may be logged).
    pub fn saw_credential(&self, credential: &Credential) {
        self.saw(credential.secret.expose());
    }

    /// A user with one key and a managed secret holding it, signed with
    /// the admin secret `admin`, or by the user's own key (and then allowed
    /// to manage its own keys) when `admin` is `None`.
    pub async fn provider_enrolled(
        &self,
        emulator: &Emulator,
        admin: Option<&str>,
    ) -> (String, Credential, String) {
        let user = emulator.user(admin.is_none()).await;
        let key = emulator.create_key(&user).await;
        self.saw_credential(&key);
        let secret = self
            .provider_secret(emulator, &user, Some(&key), admin)
            .await;
        (user, key, secret)
    }

    /// The invariants of a scenario: at most the limit of keys, the AWSCURRENT key
    /// (if any) is active and authenticates as the user, and no secret
    /// value seen appears in the logs.
    pub async fn assert_provider_invariants(&self, emulator: &Emulator, secret: &str, user: &str) {
        self.saw_credential(&emulator.root);
        let keys = emulator.keys(user).await;
        assert!(
            keys.len() <= emulator.key_limit,
            "user {user} has {} keys",
            keys.len()
        );
        if let Some(cred) = self.current_credential(secret).await {
            assert_eq!(
                emulator.check(&cred).await.as_deref(),
                Ok(user),
                "the AWSCURRENT key {} authenticates as {user}",
                cred.access_key_id
            );
        }
        self.assert_no_secret_in(&crate::captured_logs(), "the logs");
    }
}
