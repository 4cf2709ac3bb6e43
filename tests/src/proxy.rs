//! A fault-injecting HTTP proxy between the functions and moto. It forwards
//! every request, logs it by API action, and can be told to break chosen
//! requests: drop the answer after forwarding (the call took effect, the
//! caller saw a connection error), fail before forwarding, or answer with a
//! throttling or 5xx error.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What to do to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it, then close the connection without answering.
    DropResponse,
    /// Close the connection without forwarding.
    FailBefore,
    /// Answer 500 `ServiceFailure` / `InternalServiceError` without forwarding.
    ServerError,
    /// Answer `Throttling` / `ThrottlingException` without forwarding.
    Throttle,
    /// Forward it after this many milliseconds.
    Delay(u64),
    /// Forward it, then send the answer one byte every this many
    /// milliseconds.
    Trickle(u64),
    /// Answer `200` with a body of 2 MiB (more than rekey reads) without
    /// forwarding.
    Oversize,
}

impl Fault {
    /// The fault's name in test output and reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DropResponse => "drop-response",
            Fault::FailBefore => "fail-before",
            Fault::ServerError => "5xx",
            Fault::Throttle => "throttle",
            Fault::Delay(_) => "latency",
            Fault::Trickle(_) => "trickle",
            Fault::Oversize => "oversize",
        }
    }
}

/// Which requests a fault hits.
#[derive(Clone, Debug)]
pub enum Target {
    /// The n-th request the proxy sees (0-based), whatever its action.
    Ordinal(usize),
    /// The n-th request (0-based) of this action.
    Action(&'static str, usize),
    /// `len` requests in a row from the n-th one (0-based): enough to
    /// outlast the SDK's own retries of one call.
    Run(usize, usize),
    /// The first n requests of this action (every action: `None`).
    FirstN(Option<&'static str>, usize),
    /// About this percentage of all requests, chosen by a fixed hash of
    /// their ordinal (the same requests on every run).
    Percent(u32),
}

impl Target {
    fn hits(&self, ordinal: usize, action: &str, of_action: usize) -> bool {
        match self {
            Target::Ordinal(n) => *n == ordinal,
            Target::Run(n, len) => (*n..*n + *len).contains(&ordinal),
            Target::Action(a, n) => *a == action && *n == of_action,
            Target::FirstN(None, n) => ordinal < *n,
            Target::FirstN(Some(a), n) => *a == action && of_action < *n,
            Target::Percent(p) => {
                // Knuth's multiplicative hash spreads ordinals evenly.
                (ordinal as u64).wrapping_mul(2_654_435_761) % 100 < u64::from(*p)
            }
        }
    }
}

/// How new access keys behave at STS, as IAM's eventual consistency does:
/// rejected (`InvalidClientTokenId`) for their first `for_`, then accepted
/// once, rejected once more, then accepted for good.
#[derive(Clone, Copy, Debug)]
pub struct Unready {
    /// How long a new key is rejected after its creation.
    pub for_: std::time::Duration,
}

#[derive(Debug)]
struct NewKey {
    created: std::time::Instant,
    passed_once: bool,
    failed_after: bool,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The AWS service called, e.g. `iam` or `secretsmanager`.
    pub service: String,
    /// The API action, e.g. `CreateAccessKey`.
    pub action: String,
    /// The status moto answered, if the request reached it and the answer
    /// was read.
    pub status: Option<u16>,
    /// The fault the proxy applied to it, if any.
    pub fault: Option<Fault>,
    /// Query-protocol parameters that identify the object (UserName,
    /// AccessKeyId), for checks on what was touched.
    pub user_name: Option<String>,
    /// The AccessKeyId parameter, if the request has one.
    pub access_key_id: Option<String>,
    /// For a successful CreateAccessKey: the new key's id.
    pub created_key: Option<String>,
    /// The error code the service answered, in its own dialect.
    pub code: Option<String>,
    /// The `SecretId` of a Secrets Manager call.
    pub secret_id: Option<String>,
}

#[derive(Default)]
struct State {
    rules: Vec<(Target, Fault)>,
    calls: Vec<Call>,
    unready: Option<Unready>,
    new_keys: std::collections::HashMap<String, NewKey>,
}

/// A running proxy. Dropping it leaves the server running until the test's
/// runtime ends.
#[derive(Clone)]
pub struct Proxy {
    /// The proxy's URL, to use as the AWS endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, state.clone(), client.clone(), upstream.clone())
                    });
                    // An Err from the service closes the connection unanswered.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { endpoint, state }
    }

    /// Breaks the requests `target` names with `fault`.
    pub fn inject(&self, target: Target, fault: Fault) {
        self.state.lock().unwrap().rules.push((target, fault));
    }

    /// Every request the proxy has seen so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Makes keys created through the proxy from now on unready for a while.
    pub fn new_keys_unready(&self, unready: Unready) {
        self.state.lock().unwrap().unready = Some(unready);
    }

    /// Requests per action.
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for c in self.calls() {
            *counts.entry(c.action).or_insert(0) += 1;
        }
        counts
    }

    /// Forgets the log (rules stay).
    pub fn clear_log(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Fails unless the proxy saw calls and none of them was
    /// [`MUTATING`]; then forgets them.
    pub fn assert_no_change(&self, what: &str) {
        let counts = self.counts();
        assert!(!counts.is_empty(), "{what}: the proxy saw no call at all");
        for action in MUTATING {
            assert_eq!(counts.get(action), None, "{what} made {action}: {counts:?}");
        }
        self.clear_log();
    }
}

/// Every call by which rekey changes a key, a secret or its records.
pub const MUTATING: [&str; 7] = [
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "PutSecretValue",
    "UpdateSecretVersionStage",
    "TagResource",
    "UntagResource",
];

/// An answer's body: whole, or trickled.
type Body = BoxBody<Bytes, std::convert::Infallible>;

type Reply = Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>>;

fn whole(body: Bytes) -> Body {
    Full::new(body).boxed()
}

/// `body` one byte every `ms` milliseconds.
fn trickled(body: Bytes, ms: u64) -> Body {
    let bytes = futures::stream::unfold(body, move |rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        let (head, tail) = (rest.slice(..1), rest.slice(1..));
        Some((Ok(Frame::data(head)), tail))
    });
    StreamBody::new(bytes).boxed()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: Arc<str>,
) -> Reply {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let (action, form) = action_of(&parts.headers, parts.uri.query().unwrap_or(""), &body);
    let form_value = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // Alibaba's RPC dialect: the signer is `AccessKeyId`, the key a call is
    // about is `UserAccessKeyId`, and the service is told by its version.
    // SCloud's: the signer is `PublicKey`, the key a call is about
    // `AccessKeyID`.
    let rpc = form_value("SignatureNonce").is_some();
    let scloud = form_value("PublicKey").is_some();
    let service = match form_value("Version").as_deref() {
        Some("2015-05-01") if rpc => "ram".to_owned(),
        Some("2015-04-01") if rpc => "sts".to_owned(),
        _ if scloud => "scloud".to_owned(),
        _ => service_of(&parts.headers),
    };
    let mut call = Call {
        service: service.clone(),
        action: action.clone(),
        status: None,
        fault: None,
        user_name: form_value("UserName"),
        access_key_id: if rpc {
            form_value("UserAccessKeyId")
        } else if scloud {
            form_value("AccessKeyID")
        } else {
            form_value("AccessKeyId")
        },
        created_key: None,
        code: None,
        secret_id: (service == "secretsmanager")
            .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .flatten()
            .and_then(|v| v.get("SecretId")?.as_str().map(str::to_owned)),
    };
    let fault = {
        let mut s = state.lock().unwrap();
        let ordinal = s.calls.len();
        let of_action = s.calls.iter().filter(|c| c.action == action).count();
        let fault = s
            .rules
            .iter()
            .find(|(t, _)| t.hits(ordinal, &action, of_action))
            .map(|(_, f)| *f);
        call.fault = fault;
        s.calls.push(call.clone());
        fault
    };
    let index = state.lock().unwrap().calls.len() - 1;
    if action == "GetCallerIdentity" && !key_is_ready(&state, &parts.headers) {
        state.lock().unwrap().calls[index].status = Some(403);
        return Ok(invalid_token_reply().map(BodyExt::boxed));
    }
    match fault {
        Some(Fault::FailBefore) => return Err("fault: fail before forwarding".into()),
        Some(Fault::ServerError) => return Ok(error_reply(&service, 500).map(BodyExt::boxed)),
        Some(Fault::Throttle) => return Ok(error_reply(&service, 400).map(BodyExt::boxed)),
        Some(Fault::Oversize) => {
            let body = Bytes::from(vec![b' '; 2 << 20]);
            return Ok(Response::new(whole(body)));
        }
        Some(Fault::Delay(ms)) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        _ => {}
    }
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let resp = client.request(forward.body(Full::new(body))?).await?;
    let (rparts, rbody) = resp.into_parts();
    let rbody = rbody.collect().await?.to_bytes();
    {
        let mut s = state.lock().unwrap();
        let c = &mut s.calls[index];
        c.status = Some(rparts.status.as_u16());
        c.code = error_code(rparts.status, &rbody);
        if c.action == "CreateAccessKey" && rparts.status.is_success() {
            c.created_key = xml_value(&rbody, "AccessKeyId").or_else(|| {
                let answer: serde_json::Value = serde_json::from_slice(&rbody).ok()?;
                let key = answer.get("AccessKey")?;
                let id = key.get("AccessKeyId").or_else(|| key.get("AccessKeyID"))?;
                Some(id.as_str()?.to_owned())
            });
            if let (Some(id), Some(_)) = (c.created_key.clone(), s.unready) {
                s.new_keys.insert(
                    id,
                    NewKey {
                        created: std::time::Instant::now(),
                        passed_once: false,
                        failed_after: false,
                    },
                );
            }
        }
    }
    if fault == Some(Fault::DropResponse) {
        return Err("fault: answer dropped".into());
    }
    let body = match fault {
        Some(Fault::Trickle(ms)) => trickled(rbody, ms),
        _ => whole(rbody),
    };
    Ok(Response::from_parts(rparts, body))
}

/// Whether STS should accept the key signing this request (see [`Unready`]).
fn key_is_ready(state: &Mutex<State>, headers: &hyper::HeaderMap) -> bool {
    let Some(key_id) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        // SigV4 `Credential=AKID/date/...`, Alibaba V3 `Credential=AKID,...`
        .and_then(|c| c.split(['/', ',']).next())
    else {
        return true;
    };
    let mut s = state.lock().unwrap();
    let Some(unready) = s.unready else {
        return true;
    };
    let Some(key) = s.new_keys.get_mut(key_id) else {
        return true;
    };
    if key.created.elapsed() < unready.for_ {
        false
    } else if !key.passed_once {
        key.passed_once = true;
        true
    } else if !key.failed_after {
        key.failed_after = true;
        false
    } else {
        true
    }
}

fn invalid_token_reply() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from_static(
            b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>proxy</RequestId></ErrorResponse>",
        )))
        .unwrap()
}

/// The service from the SigV4 credential scope (`.../region/iam/aws4_request`).
fn service_of(headers: &hyper::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// The API action: `X-Amz-Target` (JSON protocols) or `Action=` (query).
fn action_of(
    headers: &hyper::HeaderMap,
    query: &str,
    body: &[u8],
) -> (String, Vec<(String, String)>) {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let action = target.rsplit('.').next().unwrap_or(target).to_owned();
        return (action, Vec::new());
    }
    // Alibaba's signature V3: the action and version in headers, the
    // parameters in the query (the nonce, as in version 1.0's form, marks
    // the dialect).
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(action), Some(version), Some(nonce)) = (
        header("x-acs-action"),
        header("x-acs-version"),
        header("x-acs-signature-nonce"),
    ) {
        let mut params = url_decode_form(query.as_bytes());
        params.push(("Version".into(), version.to_owned()));
        params.push(("SignatureNonce".into(), nonce.to_owned()));
        return (action.to_owned(), params);
    }
    let form: Vec<(String, String)> = url_decode_form(body);
    let action = form
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "Unknown".into());
    (action, form)
}

fn url_decode_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_value(body: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find("</")? + start;
    Some(text[start..end].to_owned())
}

/// The error code of an answer: IAM's and STS's XML `<Code>`, Alibaba's
/// JSON `Code`, Secrets Manager's `__type`, SCloud's non-zero `RetCode`
/// (which comes with HTTP 200).
fn error_code(status: StatusCode, body: &[u8]) -> Option<String> {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (!status.is_success())
            .then(|| xml_value(body, "Code"))
            .flatten();
    };
    if let Some(code) = answer.get("RetCode").and_then(serde_json::Value::as_i64) {
        return (code != 0).then(|| code.to_string());
    }
    if status.is_success() {
        return None;
    }
    ["Code", "__type"]
        .iter()
        .find_map(|k| answer.get(*k)?.as_str())
        .map(str::to_owned)
}

/// The error each service answers for throttling (400) or a failure (500);
/// Alibaba and SCloud get a failure either way.
fn error_reply(service: &str, status: u16) -> Response<Full<Bytes>> {
    // (AWS STS is `sts` here; Alibaba's STS and RAM, and SCloud, do not sign
    // with SigV4 and are never named so.)
    let (content_type, body) = if matches!(service, "ram" | "scloud") {
        // Their throttling is the emulators' own (`/_emulator/faults`).
        (
            "application/json",
            r#"{"Code":"InternalError","Message":"injected by the test proxy"}"#.to_owned(),
        )
    } else if service == "secretsmanager" {
        let code = if status == 500 {
            "InternalServiceError"
        } else {
            "ThrottlingException"
        };
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"injected by the test proxy"}}"#),
        )
    } else {
        let (kind, code) = if status == 500 {
            ("Receiver", "ServiceFailure")
        } else {
            ("Sender", "Throttling")
        };
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            ),
        )
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_in_every_dialect() {
        let code = |status: u16, body: &str| {
            error_code(StatusCode::from_u16(status).unwrap(), body.as_bytes())
        };
        let iam = "<ErrorResponse><Error><Type>Sender</Type><Code>LimitExceeded</Code></Error></ErrorResponse>";
        assert_eq!(code(409, iam).as_deref(), Some("LimitExceeded"));
        assert_eq!(code(200, "<CreateAccessKeyResponse/>"), None);
        let ram = r#"{"Code":"LimitExceeded.User.AccessKey","Message":"m"}"#;
        assert_eq!(
            code(409, ram).as_deref(),
            Some("LimitExceeded.User.AccessKey")
        );
        assert_eq!(
            code(400, r#"{"__type":"ThrottlingException"}"#).as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(
            code(200, r#"{"RetCode":8040,"Message":"m"}"#).as_deref(),
            Some("8040")
        );
        assert_eq!(code(200, r#"{"RetCode":0,"AccessKey":{}}"#), None);
        assert_eq!(code(200, r#"{"AccessKey":{"AccessKeyId":"k"}}"#), None);
    }
}
