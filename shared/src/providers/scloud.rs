//! SCloud access keys, in the UCloud API dialect: POST forms carrying
//! `Action`, `PublicKey` (the key id) and a SHA-1 `Signature`; answers are
//! JSON with `RetCode` (0 = success) inside HTTP 200. SCloud publishes no
//! per-user key limit (a setting) and no last-used API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use serde_json::{Map, Value};
use tracing::debug;

use crate::config::{Endpoint, UserPattern};
use crate::error::{Error, Result};
use crate::http::{HttpClient, NoAnswer};
use crate::model::{AccessKey, Credential, KeyStatus, LastUsed, Sensitive};
use crate::ports::{KeyApi, Signer};
use crate::providers::{unexpected, with_retries, Retry, TIME_LIMIT};

const SERVICE: &str = "SCloud IAM";

/// Documented RetCodes.
const TIMEOUT: i64 = 110;
const AUTH_ERROR: i64 = 130;
const UNAVAILABLE: i64 = 150;

/// The endpoint and the HTTP client.
#[derive(Clone, Debug)]
pub struct Api {
    http: HttpClient,
    endpoint: Endpoint,
}

impl Api {
    pub fn new(http: HttpClient, endpoint: &Endpoint) -> Self {
        Api {
            http,
            endpoint: endpoint.clone(),
        }
    }
}

/// SCloud key management for one signer.
#[derive(Clone, Debug)]
pub struct SCloud {
    api: Api,
    user_pattern: UserPattern,
    key_limit: usize,
    signer: Signer,
}

impl SCloud {
    /// SCloud key management over `api`, for the users
    /// `user_pattern` allows, with at most `key_limit` keys per user, signed by `signer`.
    pub fn new(api: Api, user_pattern: UserPattern, key_limit: usize, signer: Signer) -> Self {
        SCloud {
            api,
            user_pattern,
            key_limit,
            signer,
        }
    }

    async fn call(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
        retry: Retry,
    ) -> Result<Map<String, Value>, ApiError> {
        Call { action, params }
            .send(
                &self.api,
                &self.signer.credential,
                self.signer.project_id.as_deref(),
                retry,
            )
            .await
    }

    fn error(&self, operation: &'static str, e: ApiError) -> Error {
        if e.code == Code::Ret(AUTH_ERROR) {
            return Error::SignerRejected {
                service: SERVICE,
                operation,
                signer: format!(
                    "{} ({})",
                    self.signer.credential.access_key_id, self.signer.origin
                ),
                reason: e.to_string(),
            };
        }
        e.into_error(operation)
    }

    /// Update and delete are done when the key is gone: after a failure,
    /// look rather than guess from an undocumented RetCode.
    async fn gone(&self, user: &str, key_id: &str) -> bool {
        self.list_keys(user)
            .await
            .is_ok_and(|keys| keys.iter().all(|k| k.id != key_id))
    }
}

impl KeyApi for SCloud {
    fn key_limit(&self) -> usize {
        self.key_limit
    }

    async fn ensure_managed(&self, user: &str, _owner: &str) -> Result<()> {
        self.user_pattern.ensure(user)
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        let op = "ListAccessKeys";
        let out = self
            .call(op, &[("UserName", user)], Retry::Yes)
            .await
            .map_err(|e| self.error(op, e))?;
        parse_keys(&out, SystemTime::now())
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        let op = "CreateAccessKey";
        // Never repeated: after a lost answer a repeat would make a second
        // key; the next attempt reclaims the first as an orphan instead.
        let out = self
            .call(op, &[("UserName", user)], Retry::No)
            .await
            .map_err(|e| self.error(op, e).withhold_message())?;
        let key = out
            .get("AccessKey")
            .and_then(Value::as_object)
            .ok_or_else(|| unexpected(SERVICE, op, "AccessKey is missing".into()))?;
        let id = key_id(key).map_err(|why| unexpected(SERVICE, op, why.to_string()))?;
        match key.get("AccessKeySecret").and_then(Value::as_str) {
            Some(secret) if !secret.is_empty() => Ok(Credential {
                access_key_id: id,
                secret: Sensitive::new(secret),
            }),
            // Never quote the field: it would be the secret.
            _ => Err(unexpected(
                SERVICE,
                op,
                format!("AccessKey.AccessKeySecret of key {id} is missing or not a string"),
            )),
        }
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        let op = "UpdateAccessKey";
        let params = [("AccessKeyID", key_id), ("Status", "Inactive")];
        match self.call(op, &params, Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) if self.gone(user, key_id).await => {
                debug!(key_id, code = %e.code, "the key is already gone");
                Ok(())
            }
            Err(e) => Err(self.error(op, e)),
        }
    }

    async fn reactivate_key(&self, _user: &str, key_id: &str) -> Result<()> {
        let op = "UpdateAccessKey";
        let params = [("AccessKeyID", key_id), ("Status", "Active")];
        match self.call(op, &params, Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error(op, e)),
        }
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        let op = "DeleteAccessKey";
        match self.call(op, &[("AccessKeyID", key_id)], Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) if self.gone(user, key_id).await => {
                debug!(key_id, code = %e.code, "the key is already gone");
                Ok(())
            }
            Err(e) => Err(self.error(op, e)),
        }
    }

    /// SCloud has no last-used API: orphans are judged on the other
    /// conditions, and cleanup's usage check is skipped.
    async fn last_used(&self, _user: &str, _key_id: &str) -> Result<LastUsed> {
        Ok(LastUsed::Unknown)
    }
}

/// The key test: ListAccessKeys of `user` signed with `credential`. It
/// answers only if the key authenticates, and the key acts as `user` if it
/// is one of `user`'s keys. Returns `user`, or who it acts as otherwise.
pub async fn whoami(
    api: &Api,
    credential: &Credential,
    user: &str,
    project: Option<&str>,
) -> Result<String> {
    let op = "ListAccessKeys";
    let out = Call {
        action: op,
        params: &[("UserName", user)],
    }
    .send(api, credential, project, Retry::Yes)
    .await
    .map_err(|e| e.into_error(op))?;
    let own = parse_keys(&out, SystemTime::now())?
        .iter()
        .any(|k| k.id == credential.access_key_id);
    Ok(match own {
        true => user.to_owned(),
        false => format!("a user other than {user} (the key is not among {user}'s keys)"),
    })
}

/// `AccessKey: [...]` of ListAccessKeys, leniently: `AccessKeyID` or
/// `AccessKeyId`, `CreatedAt` as Unix seconds (number or string) or RFC
/// 3339, `Status` in any case. Anything else is an error naming the field,
/// and so is a `CreatedAt` more than a day after `now` (milliseconds where
/// seconds belong: rekey's periods and the orphan rule compare it with
/// Secrets Manager's times, so it is never trusted).
fn parse_keys(out: &Map<String, Value>, now: SystemTime) -> Result<Vec<AccessKey>> {
    let op = "ListAccessKeys";
    let list = match out.get("AccessKey").or_else(|| out.get("AccessKeys")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(unexpected(
                SERVICE,
                op,
                format!(
                    "AccessKey is not a list but {}",
                    crate::model::json_type(other)
                ),
            ))
        }
    };
    list.iter()
        .map(|entry| {
            let key = entry.as_object().ok_or_else(|| {
                unexpected(SERVICE, op, "an AccessKey entry is not an object".into())
            })?;
            let id = key_id(key).map_err(|why| unexpected(SERVICE, op, why.to_string()))?;
            let status = match key.get("Status").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("active") => KeyStatus::Active,
                Some(s) if s.eq_ignore_ascii_case("inactive") => KeyStatus::Inactive,
                other => {
                    return Err(unexpected(
                        SERVICE,
                        op,
                        format!("Status {other:?} of key {id} is neither Active nor Inactive"),
                    ))
                }
            };
            let created = key.get("CreatedAt").and_then(parse_time).ok_or_else(|| {
                unexpected(
                    SERVICE,
                    op,
                    format!(
                        "CreatedAt {} of key {id} is not a time",
                        key.get("CreatedAt")
                            .map_or("(missing)".into(), Value::to_string)
                    ),
                )
            })?;
            if created > now + FUTURE_LIMIT {
                return Err(unexpected(
                    SERVICE,
                    op,
                    format!(
                        "CreatedAt {} of key {id} is more than a day in the future (milliseconds instead of seconds?)",
                        key.get("CreatedAt").map_or(String::new(), Value::to_string)
                    ),
                ));
            }
            Ok(AccessKey {
                id,
                status,
                created,
            })
        })
        .collect()
}

fn key_id(key: &Map<String, Value>) -> Result<String, BadKeyId> {
    match key.get("AccessKeyID").or_else(|| key.get("AccessKeyId")) {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(other) => Err(BadKeyId::NotAnId(other.clone())),
        None => Err(BadKeyId::Missing),
    }
}

/// Why an AccessKey entry's id could not be read.
#[derive(Clone, Debug, PartialEq)]
enum BadKeyId {
    /// The field holds this value, which is not a key id.
    NotAnId(Value),
    /// Neither `AccessKeyID` nor `AccessKeyId` is there.
    Missing,
}

impl std::fmt::Display for BadKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadKeyId::NotAnId(other) => write!(f, "AccessKeyID {other} is not a key id"),
            BadKeyId::Missing => f.write_str("AccessKeyID is missing"),
        }
    }
}

/// How far in the future a key's creation time may be before it is not an
/// answer to trust (clocks differ by seconds; milliseconds read as seconds
/// are tens of thousands of years ahead).
const FUTURE_LIMIT: Duration = Duration::from_secs(86_400);

/// Unix seconds as a number or a string of digits, or RFC 3339.
fn parse_time(v: &Value) -> Option<SystemTime> {
    let seconds = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::String(s) => return humantime::parse_rfc3339(s).ok(),
        _ => None,
    }?;
    // Zero is "not set" in the UCloud model: not a creation time.
    (seconds > 0).then(|| UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Why a call failed: a non-zero RetCode, an HTTP status, or no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Code {
    Ret(i64),
    Http(u16),
    Unreachable,
    /// An answer longer than rekey reads (`http::MAX_ANSWER`).
    TooLarge,
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Ret(n) => write!(f, "RetCode {n}"),
            Code::Http(s) => write!(f, "HTTP {s}"),
            Code::Unreachable => f.write_str("Unreachable"),
            Code::TooLarge => f.write_str("ResponseTooLarge"),
        }
    }
}

#[derive(Debug)]
struct ApiError {
    code: Code,
    message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message.trim_end_matches('.'))
    }
}

impl ApiError {
    fn retryable(&self) -> bool {
        match self.code {
            Code::Ret(n) => n == TIMEOUT || n == UNAVAILABLE,
            Code::Http(s) => s == 429 || s >= 500,
            Code::Unreachable => true,
            Code::TooLarge => false,
        }
    }

    fn into_error(self, operation: &'static str) -> Error {
        Error::Service {
            service: SERVICE,
            operation,
            retryable: self.retryable(),
            code: self.code.to_string(),
            message: self.message,
        }
    }
}

/// One API call.
struct Call<'a> {
    action: &'static str,
    params: &'a [(&'a str, &'a str)],
}

impl Call<'_> {
    /// Sends the call, again after a failure worth retrying (with
    /// `Retry::Yes`), and returns the answer's fields.
    async fn send(
        &self,
        api: &Api,
        credential: &Credential,
        project: Option<&str>,
        retry: Retry,
    ) -> Result<Map<String, Value>, ApiError> {
        with_retries(retry, ApiError::retryable, || {
            self.send_once(api, credential, project)
        })
        .await
    }

    async fn send_once(
        &self,
        api: &Api,
        credential: &Credential,
        project: Option<&str>,
    ) -> Result<Map<String, Value>, ApiError> {
        let form = self.signed_form(credential, project);
        let response = api
            .http
            .post_form(&format!("{}/", api.endpoint.url()), form, TIME_LIMIT)
            .await
            .map_err(|why| ApiError {
                code: match why {
                    NoAnswer::TooLarge(_) => Code::TooLarge,
                    _ => Code::Unreachable,
                },
                message: format!("{}: {why}", api.endpoint.url()),
            })?;
        if !(200..300).contains(&response.status) {
            return Err(ApiError {
                code: Code::Http(response.status),
                message: "the gateway refused the call".into(),
            });
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&response.body) else {
            return Err(ApiError {
                code: Code::Http(response.status),
                message: "the answer is not a JSON object".into(),
            });
        };
        match body.get("RetCode").and_then(Value::as_i64) {
            Some(0) => Ok(body),
            Some(n) => Err(ApiError {
                code: Code::Ret(n),
                message: body
                    .get("Message")
                    .and_then(Value::as_str)
                    .map(|m| crate::model::truncate(m, 300))
                    .unwrap_or_default(),
            }),
            None => Err(ApiError {
                code: Code::Http(response.status),
                message: "the answer has no RetCode".into(),
            }),
        }
    }

    /// The form body: Action, PublicKey, ProjectId if any, the call's own
    /// parameters, and the signature over all of them.
    fn signed_form(&self, credential: &Credential, project: Option<&str>) -> String {
        let mut params: Vec<(&str, &str)> = vec![
            ("Action", self.action),
            ("PublicKey", &credential.access_key_id),
        ];
        if let Some(project) = project {
            params.push(("ProjectId", project));
        }
        params.extend_from_slice(self.params);
        let signature = sign(&params, credential.secret.expose());
        let mut pairs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        pairs.push(format!("Signature={signature}"));
        pairs.join("&")
    }
}

fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The UCloud signature: parameters sorted by name (byte order), each name
/// followed by its value with no separator or escaping, then the private
/// key; the lowercase hex SHA-1 of that.
pub fn sign(params: &[(&str, &str)], private_key: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = String::new();
    for (k, v) in sorted {
        text.push_str(k);
        text.push_str(v);
    }
    text.push_str(private_key);
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "46f09bb9fab4f12dfc160dae12273d5332b5debe";
    const PUBLIC: &str = "ucloudsomeone@example.com1296235120854146120";

    #[test]
    fn vector_1() {
        let params = [
            ("Action", "DescribeUHostInstance"),
            ("Region", "cn-bj2"),
            ("Limit", "10"),
            ("PublicKey", "someone@example.com1296235120854146120"),
        ];
        assert_eq!(
            sign(&params, KEY),
            "4201919d267504385deb93af19e0197870fed36b"
        );
    }

    #[test]
    fn vector_2() {
        let params = [
            ("Action", "CreateUHostInstance"),
            ("CPU", "2"),
            ("ChargeType", "Month"),
            ("DiskSpace", "10"),
            ("ImageId", "f43736e1-65a5-4bea-ad2e-8a46e18883c2"),
            ("LoginMode", "Password"),
            ("Memory", "2048"),
            ("Name", "Host01"),
            ("Password", "VUNsb3VkLmNu"),
            ("Quantity", "1"),
            ("Region", "cn-bj2"),
            ("Zone", "cn-bj2-04"),
            ("PublicKey", PUBLIC),
        ];
        assert_eq!(
            sign(&params, KEY),
            "4f9ef5df2abab2c6fccd1e9515cb7e2df8c6bb65"
        );
    }

    #[test]
    fn vector_3_list_parameters_sort_as_strings() {
        let names: Vec<String> = (0..12).map(|i| format!("Backends.{i}")).collect();
        let values = ["foo", "bar", "42"];
        let mut params: Vec<(&str, &str)> =
            vec![("Action", "AllocateBackendBatch"), ("PublicKey", PUBLIC)];
        for (i, name) in names.iter().enumerate() {
            params.push((name, values[i % 3]));
        }
        assert_eq!(
            sign(&params, KEY),
            "6bc32642779f8cb0bb3d3f128b1c0688abf9a1a3"
        );
    }

    #[test]
    fn the_form_carries_the_public_key_project_and_signature_never_the_secret() {
        let credential = Credential {
            access_key_id: "scloudkey0001".into(),
            secret: Sensitive::new("topsecretvalue"),
        };
        let call = Call {
            action: "ListAccessKeys",
            params: &[("UserName", "ops bot@x")],
        };
        let form = call.signed_form(&credential, Some("org-abc"));
        assert!(!form.contains("topsecretvalue"));
        assert!(form.starts_with("Action=ListAccessKeys&PublicKey=scloudkey0001&ProjectId=org%2Dabc&UserName=ops%20bot%40x&Signature="), "{form}");
        let want = sign(
            &[
                ("Action", "ListAccessKeys"),
                ("PublicKey", "scloudkey0001"),
                ("ProjectId", "org-abc"),
                ("UserName", "ops bot@x"),
            ],
            "topsecretvalue",
        );
        assert!(form.ends_with(&want));
    }

    #[test]
    fn keys_are_read_leniently_but_never_guessed() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"RetCode":0,"AccessKey":[
                {"AccessKeyID":"k1","Status":"Active","CreatedAt":1700000000},
                {"AccessKeyId":"k2","Status":"inactive","CreatedAt":"1700000001","UserID":"7"},
                {"AccessKeyId":"k3","Status":"Active","CreatedAt":"2024-01-02T03:04:05Z"}]}"#,
        )
        .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let keys = parse_keys(&body, now).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys[0].created,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(keys[1].status, KeyStatus::Inactive);
        assert_eq!(
            keys[2].created,
            humantime::parse_rfc3339("2024-01-02T03:04:05Z").unwrap()
        );
        for (bad, field) in [
            (
                r#"{"AccessKey":[{"AccessKeyID":"k1","Status":"Active","CreatedAt":"soon"}]}"#,
                "CreatedAt \"soon\" of key k1",
            ),
            (
                r#"{"AccessKey":[{"AccessKeyID":"k1","Status":"Active","CreatedAt":0}]}"#,
                "CreatedAt 0 of key k1",
            ),
            (
                r#"{"AccessKey":[{"AccessKeyID":"k1","Status":"Deleted","CreatedAt":1}]}"#,
                "Status Some(\"Deleted\") of key k1",
            ),
            (
                r#"{"AccessKey":[{"Status":"Active","CreatedAt":1}]}"#,
                "AccessKeyID is missing",
            ),
            (
                r#"{"AccessKey":{"AccessKeyID":"k1"}}"#,
                "AccessKey is not a list",
            ),
            (
                r#"{"AccessKey":[{"AccessKeyID":"k1","Status":"Active","CreatedAt":1700000000000}]}"#,
                "CreatedAt 1700000000000 of key k1 is more than a day in the future",
            ),
            (
                r#"{"AccessKey":[{"AccessKeyID":"k1","Status":"Active","CreatedAt":1800090000}]}"#,
                "is more than a day in the future",
            ),
        ] {
            let body: Map<String, Value> = serde_json::from_str(bad).unwrap();
            let err = parse_keys(&body, now).unwrap_err().to_string();
            assert!(err.contains(field), "{bad}: {err}");
        }
        assert!(parse_keys(&Map::new(), now).unwrap().is_empty());
    }

    #[test]
    fn retcodes_map_to_retryable_or_not() {
        let e = |code| ApiError {
            code,
            message: String::new(),
        };
        assert!(e(Code::Ret(TIMEOUT)).retryable());
        assert!(e(Code::Ret(UNAVAILABLE)).retryable());
        assert!(e(Code::Http(502)).retryable());
        assert!(e(Code::Unreachable).retryable());
        assert!(!e(Code::Ret(AUTH_ERROR)).retryable());
        assert!(!e(Code::Ret(161)).retryable());
        let err = e(Code::Ret(8040)).into_error("CreateAccessKey");
        assert_eq!(err.kind(), "ServiceError");
        assert!(err.to_string().contains("RetCode 8040"), "{err}");
        assert_eq!(
            e(Code::Ret(UNAVAILABLE)).into_error("X").kind(),
            "ServiceUnavailable"
        );
    }
}
