//! Alibaba Cloud RAM AccessKeys. Calls are RPC-style POSTs signed with
//! signature V3 (`ACS3-HMAC-SHA256`, [`super::acs3`]: the parameters in the
//! query, the signature in headers) or, with
//! `REKEY_ALIBABA_SIGNATURE_VERSION=v1`, forms signed with version 1.0
//! (HMAC-SHA1); a new key is tested with STS GetCallerIdentity. Facts: the
//! RAM API 2015-05-01 and STS 2015-04-01.

use std::time::SystemTime;

use aws_lc_rs::hmac;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;

use bytes::Bytes;

use super::acs3;
use crate::config::{AlibabaSettings, AlibabaSignature, Endpoint, UserPattern};
use crate::error::{Error, Result};
use crate::http::{HttpClient, NoAnswer};
use crate::model::{AccessKey, Credential, KeyStatus, LastUsed, Sensitive};
use crate::ports::{KeyApi, Signer};
use crate::providers::{unexpected, with_retries, Retry, TIME_LIMIT};

const RAM: &str = "Alibaba RAM";
const STS: &str = "Alibaba STS";
const RAM_VERSION: &str = "2015-05-01";
const STS_VERSION: &str = "2015-04-01";

/// RAM key management for one signer.
#[derive(Clone, Debug)]
pub struct AlibabaRam {
    api: Api,
    user_pattern: UserPattern,
    signer: Signer,
}

/// The endpoints and the HTTP client.
#[derive(Clone, Debug)]
pub struct Api {
    http: HttpClient,
    ram: Endpoint,
    sts: Endpoint,
    signature: AlibabaSignature,
}

impl Api {
    pub fn new(http: HttpClient, settings: &AlibabaSettings) -> Self {
        Api {
            http,
            ram: settings.ram_endpoint.clone(),
            sts: settings.sts_endpoint.clone(),
            signature: settings.signature,
        }
    }
}

impl AlibabaRam {
    /// RAM key management over `api`, for the users
    /// `user_pattern` allows, signed by `signer`.
    pub fn new(api: Api, user_pattern: UserPattern, signer: Signer) -> Self {
        AlibabaRam {
            api,
            user_pattern,
            signer,
        }
    }

    async fn ram(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
        retry: Retry,
    ) -> Result<Value, ApiError> {
        let call = Call {
            endpoint: &self.api.ram,
            version: RAM_VERSION,
            action,
            params,
            signature: self.api.signature,
        };
        call.send(&self.api.http, &self.signer.credential, retry)
            .await
    }

    /// Maps the errors every RAM call shares; `None` leaves it to the caller.
    fn common_error(&self, operation: &'static str, user: &str, e: &ApiError) -> Option<Error> {
        let code = e.code.as_str();
        if code == "EntityNotExist.User" {
            return Some(Error::UserNotFound {
                user: user.to_owned(),
            });
        }
        if signer_refused(code) {
            return Some(Error::SignerRejected {
                service: RAM,
                operation,
                signer: format!(
                    "{} ({})",
                    self.signer.credential.access_key_id, self.signer.origin
                ),
                reason: format!("{}: {}", e.code, e.message.trim_end_matches('.')),
            });
        }
        None
    }

    fn error(&self, operation: &'static str, user: &str, e: ApiError) -> Error {
        self.common_error(operation, user, &e)
            .unwrap_or_else(|| e.into_error(RAM, operation))
    }
}

/// Codes that mean the signing key itself was refused or lacks permission.
fn signer_refused(code: &str) -> bool {
    code.starts_with("InvalidAccessKeyId")
        || code.starts_with("Forbidden")
        || matches!(
            code,
            "SignatureDoesNotMatch" | "IncompleteSignature" | "NoPermission"
        )
}

impl KeyApi for AlibabaRam {
    fn key_limit(&self) -> usize {
        2
    }

    async fn ensure_managed(&self, user: &str, _owner: &str) -> Result<()> {
        self.user_pattern.ensure(user)
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        let op = "ListAccessKeys";
        let out = self
            .ram(op, &[("UserName", user)], Retry::Yes)
            .await
            .map_err(|e| self.error(op, user, e))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Key {
            access_key_id: String,
            status: String,
            create_date: String,
        }
        let keys: Vec<Key> = match out.pointer("/AccessKeys/AccessKey") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => serde_json::from_value(list.clone())
                .map_err(|e| unexpected(RAM, op, format!("AccessKeys.AccessKey: {e}")))?,
        };
        keys.into_iter()
            .map(|k| {
                Ok(AccessKey {
                    status: match k.status.as_str() {
                        "Active" => KeyStatus::Active,
                        "Inactive" => KeyStatus::Inactive,
                        other => {
                            return Err(unexpected(
                                RAM,
                                op,
                                format!("Status {:?} of key {}", other, k.access_key_id),
                            ))
                        }
                    },
                    created: parse_time(&k.create_date).ok_or_else(|| {
                        unexpected(
                            RAM,
                            op,
                            format!("CreateDate {:?} of key {}", k.create_date, k.access_key_id),
                        )
                    })?,
                    id: k.access_key_id,
                })
            })
            .collect()
    }

    async fn create_key(&self, user: &str) -> Result<Credential> {
        let op = "CreateAccessKey";
        // Never repeated: after a lost answer a repeat would make a second
        // key. The step fails instead; the key it may have made is an
        // orphan that the next attempt reclaims.
        let out = self
            .ram(op, &[("UserName", user)], Retry::No)
            .await
            .map_err(|e| match self.common_error(op, user, &e) {
                Some(err) => err,
                None if e.code == "LimitExceeded.User.AccessKey" => Error::KeyLimitReached(format!(
                    "RAM user {user} reached its limit of 2 AccessKeys while rekey was creating one (another process created a key meanwhile); nothing was changed, rotate again"
                )),
                // The answer would carry the new secret: keep only the code.
                None => e.into_error(RAM, op).withhold_message(),
            })?;
        let id = out
            .pointer("/AccessKey/AccessKeyId")
            .and_then(Value::as_str);
        let secret = out
            .pointer("/AccessKey/AccessKeySecret")
            .and_then(Value::as_str);
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Credential {
                access_key_id: id.to_owned(),
                secret: Sensitive::new(secret),
            }),
            _ => Err(unexpected(
                RAM,
                op,
                "AccessKey.AccessKeyId and AccessKey.AccessKeySecret are missing".into(),
            )),
        }
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        let op = "UpdateAccessKey";
        let params = [
            ("UserName", user),
            ("UserAccessKeyId", key_id),
            ("Status", "Inactive"),
        ];
        match self.ram(op, &params, Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "EntityNotExist.User.AccessKey" => Ok(()),
            Err(e) => Err(self.error(op, user, e)),
        }
    }

    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        let op = "UpdateAccessKey";
        let params = [
            ("UserName", user),
            ("UserAccessKeyId", key_id),
            ("Status", "Active"),
        ];
        match self.ram(op, &params, Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error(op, user, e)),
        }
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        let op = "DeleteAccessKey";
        let params = [("UserName", user), ("UserAccessKeyId", key_id)];
        match self.ram(op, &params, Retry::Yes).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "EntityNotExist.User.AccessKey" => Ok(()),
            Err(e) => Err(self.error(op, user, e)),
        }
    }

    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed> {
        let op = "GetAccessKeyLastUsed";
        let params = [("UserName", user), ("UserAccessKeyId", key_id)];
        let out = self
            .ram(op, &params, Retry::Yes)
            .await
            .map_err(|e| self.error(op, user, e))?;
        match out
            .pointer("/AccessKeyLastUsed/LastUsedDate")
            .and_then(Value::as_str)
        {
            None | Some("") => Ok(LastUsed::Never),
            Some(t) => parse_time(t)
                .map(|when| LastUsed::At {
                    when,
                    service: None,
                })
                .ok_or_else(|| {
                    unexpected(RAM, op, format!("AccessKeyLastUsed.LastUsedDate {t:?}"))
                }),
        }
    }
}

/// STS GetCallerIdentity signed with `credential`: the RAM user name it
/// acts as, or the whole ARN when it is not a RAM user.
pub async fn whoami(api: &Api, credential: &Credential) -> Result<String> {
    let op = "GetCallerIdentity";
    let call = Call {
        endpoint: &api.sts,
        version: STS_VERSION,
        action: op,
        params: &[],
        signature: api.signature,
    };
    // Repeated on throttling and 5xx like any read; an unknown or disabled
    // key is answered at once and is the caller's KeyNotReady.
    let out = call
        .send(&api.http, credential, Retry::Yes)
        .await
        .map_err(|e| e.into_error(STS, op))?;
    let arn = out.get("Arn").and_then(Value::as_str).unwrap_or_default();
    // acs:ram::1234567890123456:user/ops-bot -> ops-bot
    Ok(match arn.split_once(":user/") {
        Some((_, name)) => name.to_owned(),
        None => arn.to_owned(),
    })
}

/// One RPC call.
struct Call<'a> {
    endpoint: &'a Endpoint,
    version: &'static str,
    action: &'static str,
    params: &'a [(&'a str, &'a str)],
    signature: AlibabaSignature,
}

/// An error answer, or no answer (`status` 0).
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: String,
    message: String,
}

impl ApiError {
    fn retryable(&self) -> bool {
        self.status == 0
            || self.status >= 500
            || self.code.starts_with("Throttling")
            || matches!(
                self.code.as_str(),
                "ServiceUnavailable" | "InternalError" | "SignatureNonceUsed"
            )
    }

    fn into_error(self, service: &'static str, operation: &'static str) -> Error {
        Error::Service {
            service,
            operation,
            retryable: self.retryable(),
            code: self.code,
            message: self.message,
        }
    }
}

impl Call<'_> {
    /// Sends the call, again with a fresh nonce and time after a failure
    /// worth retrying (with `Retry::Yes`), and returns the JSON answer.
    async fn send(
        &self,
        http: &HttpClient,
        credential: &Credential,
        retry: Retry,
    ) -> Result<Value, ApiError> {
        with_retries(retry, ApiError::retryable, || {
            self.send_once(http, credential)
        })
        .await
    }

    async fn send_once(
        &self,
        http: &HttpClient,
        credential: &Credential,
    ) -> Result<Value, ApiError> {
        let (now, nonce) = (SystemTime::now(), uuid::Uuid::new_v4().to_string());
        let url = format!("{}/", self.endpoint.url());
        let sent = match self.signature {
            AlibabaSignature::V3 => {
                let (query, headers) = self.signed_v3(credential, now, &nonce);
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let url = match query.is_empty() {
                    true => url,
                    false => format!("{url}?{query}"),
                };
                http.post(&url, &headers, Bytes::new(), TIME_LIMIT).await
            }
            AlibabaSignature::V1 => {
                let form = self.signed_form(credential, now, &nonce);
                http.post_form(&url, form, TIME_LIMIT).await
            }
        };
        let response = sent.map_err(|why| {
            let (status, code) = match why {
                // Read no further, and not worth asking again.
                NoAnswer::TooLarge(_) => (413, "ResponseTooLarge"),
                _ => (0, "Unreachable"),
            };
            ApiError {
                status,
                code: code.into(),
                message: format!("{}: {why}", self.endpoint.url()),
            }
        })?;
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        if (200..300).contains(&response.status) {
            return body.ok_or_else(|| ApiError {
                status: response.status,
                code: "UnexpectedResponse".into(),
                message: "the answer is not JSON".into(),
            });
        }
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .map(|s| crate::model::truncate(s, 300))
        };
        Err(ApiError {
            status: response.status,
            code: field("Code").unwrap_or_else(|| format!("HTTP{}", response.status)),
            message: field("Message").unwrap_or_default(),
        })
    }

    /// Signature V3: the query (the call's parameters) and the headers,
    /// `Authorization` last, signed over `host` and every `x-acs-*` one.
    fn signed_v3(
        &self,
        credential: &Credential,
        now: SystemTime,
        nonce: &str,
    ) -> (String, Vec<(&'static str, String)>) {
        let mut headers = vec![
            ("host", self.endpoint.authority().to_owned()),
            ("x-acs-action", self.action.to_owned()),
            ("x-acs-version", self.version.to_owned()),
            (
                "x-acs-date",
                humantime::format_rfc3339_seconds(now).to_string(),
            ),
            ("x-acs-signature-nonce", nonce.to_owned()),
            ("x-acs-content-sha256", acs3::content_sha256(b"")),
        ];
        let signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authorization = acs3::authorization(
            "POST",
            &self.endpoint.path(),
            self.params,
            &signed,
            &acs3::content_sha256(b""),
            &credential.access_key_id,
            credential.secret.expose(),
        );
        headers.push(("authorization", authorization));
        (acs3::canonical_query(self.params), headers)
    }

    /// The form body: the common parameters, the call's own, and the
    /// signature over all of them.
    fn signed_form(&self, credential: &Credential, now: SystemTime, nonce: &str) -> String {
        let timestamp = humantime::format_rfc3339_seconds(now).to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("Action", self.action),
            ("Format", "JSON"),
            ("Version", self.version),
            ("AccessKeyId", &credential.access_key_id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", &timestamp),
        ];
        params.extend_from_slice(self.params);
        let signature = sign("POST", &params, credential.secret.expose());
        let mut form = canonical_query(&params);
        form.push_str("&Signature=");
        form.push_str(&percent_encode(&signature));
        form
    }
}

/// RAM dates: `2015-01-23T12:33:18Z`.
fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Keeps `A-Z a-z 0-9 - _ . ~`; everything else is `%XY` (uppercase hex).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Names and values encoded, sorted by encoded name, joined `k=v&k=v`.
fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let pairs: Vec<String> = encoded
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join("&")
}

/// Signature version 1.0: Base64(HMAC-SHA1(secret + "&",
/// METHOD + "&%2F&" + percentEncode(canonical query))).
pub fn sign(method: &str, params: &[(&str, &str)], secret: &str) -> String {
    let string_to_sign = format!("{method}&%2F&{}", percent_encode(&canonical_query(params)));
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    aws_smithy_types::base64::encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector 1 of the reference, without Signature.
    const V1: [(&str, &str); 9] = [
        ("UserName", "test"),
        ("SignatureVersion", "1.0"),
        ("Format", "JSON"),
        ("Timestamp", "2015-08-18T03:15:45Z"),
        ("AccessKeyId", "testid"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("Version", "2015-05-01"),
        ("Action", "CreateUser"),
        ("SignatureNonce", "6a6e0ca6-4557-11e5-86a2-b8e8563dc8d2"),
    ];

    const V2: [(&str, &str); 8] = [
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("Format", "XML"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2014-05-26"),
    ];

    #[test]
    fn vector_1_string_to_sign_and_signatures() {
        assert_eq!(
            format!("GET&%2F&{}", percent_encode(&canonical_query(&V1))),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DCreateUser%26Format%3DJSON%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D6a6e0ca6-4557-11e5-86a2-b8e8563dc8d2%26SignatureVersion%3D1.0%26Timestamp%3D2015-08-18T03%253A15%253A45Z%26UserName%3Dtest%26Version%3D2015-05-01"
        );
        assert_eq!(
            sign("GET", &V1, "testsecret"),
            "kRA2cnpJVacIhDMzXnoNZG9tDCI="
        );
        assert_eq!(
            sign("POST", &V1, "testsecret"),
            "dqKXu+HdMSCjXsbEfrTz+C9T7AE="
        );
    }

    #[test]
    fn vector_2() {
        assert_eq!(
            sign("GET", &V2, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert_eq!(
            sign("POST", &V2, "testsecret"),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }

    #[test]
    fn vector_3_special_characters() {
        let mut params = V2.to_vec();
        params.push(("UserName", "a b*c~d+e/f=g&h中"));
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "vQtfRUQWsYtxblLlWu9Akvz/oMs="
        );
    }

    #[test]
    fn vector_4_empty_method() {
        assert_eq!(
            sign("", &[("test", "ok")], "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    #[test]
    fn percent_encoding_follows_the_reference() {
        assert_eq!(
            percent_encode("a b*c~d+e/f=g&h"),
            "a%20b%2Ac~d%2Be%2Ff%3Dg%26h"
        );
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn the_v3_request_signs_its_headers_and_query() {
        let endpoint = Endpoint::new("test", "http://127.0.0.1:4100").unwrap();
        let call = Call {
            endpoint: &endpoint,
            version: RAM_VERSION,
            action: "UpdateAccessKey",
            params: &[("UserName", "ops bot"), ("Status", "Inactive")],
            signature: AlibabaSignature::V3,
        };
        let credential = Credential {
            access_key_id: "LTAI0000000000000001".into(),
            secret: Sensitive::new("topsecretvalue"),
        };
        let when = humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let (query, headers) = call.signed_v3(&credential, when, "nonce-1");
        assert_eq!(query, "Status=Inactive&UserName=ops%20bot");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("host"), Some("127.0.0.1:4100"));
        assert_eq!(get("x-acs-action"), Some("UpdateAccessKey"));
        assert_eq!(get("x-acs-version"), Some(RAM_VERSION));
        assert_eq!(get("x-acs-date"), Some("2026-01-02T03:04:05Z"));
        assert_eq!(get("x-acs-signature-nonce"), Some("nonce-1"));
        let signed: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(k, _)| *k != "authorization")
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let expected = acs3::authorization(
            "POST",
            "/",
            call.params,
            &signed,
            &acs3::content_sha256(b""),
            "LTAI0000000000000001",
            "topsecretvalue",
        );
        assert_eq!(get("authorization"), Some(expected.as_str()));
        assert!(expected.starts_with(
            "ACS3-HMAC-SHA256 Credential=LTAI0000000000000001,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="
        ));
        assert!(headers.iter().all(|(_, v)| !v.contains("topsecretvalue")));
    }

    #[test]
    fn the_form_carries_fresh_common_parameters_and_its_signature() {
        let endpoint = Endpoint::new("test", "https://ram.aliyuncs.com").unwrap();
        let call = Call {
            endpoint: &endpoint,
            version: RAM_VERSION,
            action: "ListAccessKeys",
            params: &[("UserName", "ops-bot")],
            signature: AlibabaSignature::V1,
        };
        let credential = Credential {
            access_key_id: "LTAI0000000000000001".into(),
            secret: Sensitive::new("topsecretvalue"),
        };
        let when = humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let form = call.signed_form(&credential, when, "nonce-1");
        assert!(!form.contains("topsecretvalue"));
        let pairs: Vec<(String, String)> = form
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .unwrap()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Timestamp"), Some("2026-01-02T03:04:05Z"));
        assert_eq!(get("SignatureNonce"), Some("nonce-1"));
        assert_eq!(get("Action"), Some("ListAccessKeys"));
        assert_eq!(get("UserName"), Some("ops-bot"));
        let unsigned: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            get("Signature"),
            Some(sign("POST", &unsigned, "topsecretvalue").as_str())
        );
        let other = call.signed_form(&credential, when, "nonce-2");
        let signature_of = |form: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix("Signature="))
                .map(str::to_owned)
        };
        assert!(signature_of(&other).is_some());
        assert_ne!(
            signature_of(&form),
            signature_of(&other),
            "a new nonce gives a new signature"
        );
    }

    #[test]
    fn signer_refusals_are_told_apart_from_other_errors() {
        for code in [
            "InvalidAccessKeyId.NotFound",
            "Forbidden.AccessKeyDisabled",
            "SignatureDoesNotMatch",
            "NoPermission",
        ] {
            assert!(signer_refused(code), "{code}");
        }
        for code in [
            "Throttling.User",
            "EntityNotExist.User",
            "LimitExceeded.User.AccessKey",
        ] {
            assert!(!signer_refused(code), "{code}");
        }
        let throttled = ApiError {
            status: 400,
            code: "Throttling.User".into(),
            message: String::new(),
        };
        assert!(throttled.retryable());
        assert_eq!(
            throttled.into_error(RAM, "ListAccessKeys").kind(),
            "ServiceUnavailable"
        );
        let limit = ApiError {
            status: 409,
            code: "LimitExceeded.User.AccessKey".into(),
            message: String::new(),
        };
        assert!(!limit.retryable());
    }
}
