//! The functions' roles as the template grants them, played by moto IAM
//! users (one per function, holding exactly its role's policies), and the
//! policy gate's record of what it allowed and denied
//! (`tests/support/policy_gate.py`, [`crate::moto_behind_policy_gate`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rekey::model::{Credential, Sensitive};
use rekey::Config;
use serde_json::Value;

use crate::{moto, sdk_config, workspace_root, App, World};

/// The IAM path of the users that play the functions' roles: outside the
/// managed path, so that no role may touch another.
pub const ROLE_PATH: &str = "/rekey-roles/";

/// One function's role: its logical id and its inline policies
/// `(name, document)`, every intrinsic resolved.
#[derive(Clone, Debug)]
pub struct Role {
    /// The role's logical id in the template (`HookFunctionRole`, ...).
    pub logical_id: String,
    /// Its inline policies, in the template's order.
    pub policies: Vec<(String, Value)>,
}

impl Role {
    /// Every action the role grants (`service:Action`), in order.
    pub fn actions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, document) in &self.policies {
            let statements = match &document["Statement"] {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for st in statements {
                let actions = match &st["Action"] {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for a in actions.iter().filter_map(Value::as_str) {
                    if !out.iter().any(|o| o == a) {
                        out.push(a.to_owned());
                    }
                }
            }
        }
        out
    }
}

/// The Python with the pinned aws-sam-translator: `REKEY_INFRA_PYTHON`,
/// else `.venv-infra` (made by `scripts/bootstrap infra`).
pub fn infra_python() -> PathBuf {
    if let Ok(p) = std::env::var("REKEY_INFRA_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv-infra/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/bootstrap infra (the SAM transform needs its pinned aws-sam-translator)",
        venv.display()
    );
    venv
}

/// Each function's role (`hook`, `create`, `test`, `finish`, `cleanup`) as
/// a deployment with `params` holds it: `infra/template.yaml` (or the
/// template `REKEY_TEMPLATE` names) SAM-transformed, its parameters
/// substituted (`tests/infra/permissions.py roles`).
pub fn role_policies(params: &[(&str, &str)]) -> BTreeMap<String, Role> {
    let mut command = Command::new(infra_python());
    command
        .arg(workspace_root().join("tests/infra/permissions.py"))
        .arg("roles");
    if let Ok(template) = std::env::var("REKEY_TEMPLATE") {
        command.arg("--template").arg(template);
    }
    for (name, value) in params {
        command.arg("--param").arg(format!("{name}={value}"));
    }
    let out = command.output().expect("run tests/infra/permissions.py");
    assert!(
        out.status.success(),
        "tests/infra/permissions.py roles failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let roles: BTreeMap<String, Value> =
        serde_json::from_slice(&out.stdout).expect("permissions.py prints JSON");
    roles
        .into_iter()
        .map(|(function, role)| {
            let policies = role["policies"]
                .as_array()
                .expect("policies")
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        p["document"].clone(),
                    )
                })
                .collect();
            let logical_id = role["role"].as_str().unwrap().to_owned();
            (
                function,
                Role {
                    logical_id,
                    policies,
                },
            )
        })
        .collect()
}

/// One decision of the policy gate.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Decision {
    /// The signer's ARN (a user's with its path).
    pub principal: String,
    /// `service:Action`.
    pub action: String,
    /// The resource's ARN, or `*`.
    pub resource: String,
    /// The condition keys of the request (lower-cased) and their values.
    pub context: Value,
    /// Whether the call was allowed.
    pub allowed: bool,
    /// The statement that allowed it, or why nothing did.
    pub why: String,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "DENIED" };
        write!(
            f,
            "{} {verdict} {} on {}",
            self.principal, self.action, self.resource
        )?;
        if self.context.as_object().is_some_and(|c| !c.is_empty()) {
            write!(f, " with {}", self.context)?;
        }
        write!(f, ": {}", self.why)?;
        if !self.allowed {
            write!(
                f,
                "; missing grant: {{\"Effect\": \"Allow\", \"Action\": \"{}\", \"Resource\": \"{}\"}} with conditions that hold for this request",
                self.action, self.resource
            )?;
        }
        Ok(())
    }
}

async fn gate(method: &str) -> Vec<Decision> {
    let moto = moto();
    assert!(moto.policy_gate, "moto runs without the policy gate");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}/_policy_gate/log", moto.endpoint))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("the policy gate answers");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("the policy gate's log is JSON")
}

/// Every decision of the policy gate so far.
pub async fn gate_log() -> Vec<Decision> {
    gate("GET").await
}

impl World {
    /// A new IAM user under [`ROLE_PATH`] holding exactly `role`'s policies
    /// as inline policies, and its access key: the function's principal.
    /// Returns the user's ARN and key.
    pub async fn role_user(&self, function: &str, role: &Role) -> (String, Credential) {
        let name = format!(
            "{function}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let user = self
            .iam
            .create_user()
            .user_name(&name)
            .path(ROLE_PATH)
            .send()
            .await
            .expect("CreateUser");
        for (policy, document) in &role.policies {
            self.iam
                .put_user_policy()
                .user_name(&name)
                .policy_name(policy)
                .policy_document(document.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutUserPolicy {policy}: {e:?}"));
        }
        let key = self
            .iam
            .create_access_key()
            .user_name(&name)
            .send()
            .await
            .expect("CreateAccessKey");
        let key = key.access_key().unwrap();
        self.saw(key.secret_access_key());
        (
            user.user().unwrap().arn().to_owned(),
            Credential {
                access_key_id: key.access_key_id().to_owned(),
                secret: Sensitive::new(key.secret_access_key()),
            },
        )
    }

    /// The steps as the functions build them, signed by `credential`.
    pub async fn app_as(&self, credential: &Credential, config: Config) -> App {
        crate::world::app_on(&sdk_config(credential).await, config)
    }
}
