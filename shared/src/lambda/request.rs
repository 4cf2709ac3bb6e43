//! One request per function, each parsed and validated from the event
//! ([`Request::parse`]). No I/O here: a request that parses is well-formed,
//! and what it asks is then up to the steps.

use std::time::Duration;

use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::Function;
use crate::error::{Error, Result};
use crate::model::MAX_SECRET_ID;
use crate::steps::TriageRequest;

/// A function's event, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `rekey-hook`: one of Secrets Manager's rotation steps.
    Hook(HookRequest),
    /// `rekey-create`: start (or resume) a rotation.
    Create(CreateRequest),
    /// `rekey-test`: probe the pending key once.
    Test(TokenRequest),
    /// `rekey-finish`: promote the pending key.
    Finish(TokenRequest),
    /// `rekey-cleanup`: one secret, or every managed secret.
    Cleanup(CleanupRequest),
}

/// Secrets Manager's rotation event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRequest {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// The rotation's token: the version it makes.
    pub token: String,
    /// Which of the four steps to run.
    pub step: HookStep,
}

/// One of Secrets Manager's four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStep {
    /// `createSecret`: make the new key and store it as AWSPENDING.
    Create,
    /// `setSecret`: nothing to push for access keys; the guard still runs.
    Set,
    /// `testSecret`: the pending key must authenticate.
    Test,
    /// `finishSecret`: promote the pending key.
    Finish,
}

impl HookStep {
    /// The step as Secrets Manager names it (`createSecret`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HookStep::Create => "createSecret",
            HookStep::Set => "setSecret",
            HookStep::Test => "testSecret",
            HookStep::Finish => "finishSecret",
        }
    }

    fn parse(step: &str) -> Result<HookStep> {
        match step {
            "createSecret" => Ok(HookStep::Create),
            "setSecret" => Ok(HookStep::Set),
            "testSecret" => Ok(HookStep::Test),
            "finishSecret" => Ok(HookStep::Finish),
            other => Err(Error::InvalidEvent(format!(
                "unknown Step {:?}: expected createSecret, setSecret, testSecret or finishSecret",
                crate::model::truncate(other, 40)
            ))),
        }
    }
}

/// `rekey-create`'s event: `{"SecretId", "ClientRequestToken"?,
/// "RotationPeriod"?, "Resume"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// The event's token, or a new one when it has none.
    pub token: String,
    /// Start a rotation only if AWSCURRENT is at least this old; the
    /// scheduled pipeline passes it.
    pub period: Option<Duration>,
    /// When another token's rotation is in progress, carry on with that one
    /// instead of refusing (the scheduled pipeline passes `true`, so a
    /// rotation that stalled resumes on the next run).
    pub resume: bool,
}

/// `rekey-test`'s and `rekey-finish`'s event: `{"SecretId",
/// "ClientRequestToken"}`, the output of the previous state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// The token `rekey-create` answered.
    pub token: String,
}

/// `rekey-cleanup`'s event: `{}` sweeps every managed secret,
/// `{"SecretId"}` checks one in full, `{"Triage": {"RotationPeriod",
/// "SecretIds"?, "NextToken"?}}` is the state machine's look at a few
/// pages of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupRequest {
    /// Every managed secret with something due, cleaned in this invocation.
    All,
    /// One secret, checked and cleaned in full.
    One(String),
    /// What is due, for the state machine.
    Triage(TriageRequest),
}

/// Secrets one explicit `SecretIds` list may name.
pub const MAX_SECRET_IDS: usize = 100;

/// What an invocation is about, as far as its event could be read: the
/// fields of its tracing span, and the `SecretId` of its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The function's name, or the hook's step as the event gives it.
    pub step: String,
    /// The secret's name or ARN; `*` for a sweep, empty when unreadable.
    pub secret_id: String,
    /// The rotation's token, when there is one.
    pub token: Option<String>,
}

impl Subject {
    /// An event nothing could be read from.
    fn unread(function: Function) -> Subject {
        Subject {
            step: function.name().to_owned(),
            secret_id: String::new(),
            token: None,
        }
    }
}

/// An event that was refused: the reason, and what could be read of it.
#[derive(Debug)]
pub struct Refused {
    /// Always [`Error::InvalidEvent`].
    pub error: Error,
    /// What the event is about, as far as it could be read.
    pub subject: Subject,
}

impl Request {
    /// Parses and validates `function`'s event.
    pub fn parse(function: Function, payload: Value) -> Result<Request, Box<Refused>> {
        let unread = |error| {
            Box::new(Refused {
                error,
                subject: Subject::unread(function),
            })
        };
        match function {
            Function::Hook => HookRequest::parse(payload),
            Function::Create => CreateRequest::parse(payload)
                .map(Request::Create)
                .map_err(unread),
            Function::Test => TokenRequest::parse(payload)
                .map(Request::Test)
                .map_err(unread),
            Function::Finish => TokenRequest::parse(payload)
                .map(Request::Finish)
                .map_err(unread),
            Function::Cleanup => CleanupRequest::parse(payload)
                .map(Request::Cleanup)
                .map_err(unread),
        }
    }

    /// The function this request is for.
    pub fn function(&self) -> Function {
        match self {
            Request::Hook(_) => Function::Hook,
            Request::Create(_) => Function::Create,
            Request::Test(_) => Function::Test,
            Request::Finish(_) => Function::Finish,
            Request::Cleanup(_) => Function::Cleanup,
        }
    }

    /// What this request is about, for its span and metrics.
    pub fn subject(&self) -> Subject {
        let step = self.function().name().to_owned();
        match self {
            Request::Hook(r) => Subject {
                step: r.step.name().to_owned(),
                secret_id: r.secret_id.clone(),
                token: Some(r.token.clone()),
            },
            Request::Create(CreateRequest {
                secret_id, token, ..
            })
            | Request::Test(TokenRequest { secret_id, token })
            | Request::Finish(TokenRequest { secret_id, token }) => Subject {
                step,
                secret_id: secret_id.clone(),
                token: Some(token.clone()),
            },
            Request::Cleanup(r) => Subject {
                step,
                secret_id: match r {
                    CleanupRequest::One(id) => id.clone(),
                    CleanupRequest::All | CleanupRequest::Triage(_) => "*".into(),
                },
                token: None,
            },
        }
    }
}

impl HookRequest {
    /// Refused with what was read once the SecretId and token are valid:
    /// an unknown Step is reported on its secret.
    fn parse(payload: Value) -> Result<Request, Box<Refused>> {
        let e = parse_event::<SecretsManagerSecretRotationEvent>(
            payload,
            r#"{"SecretId", "ClientRequestToken", "Step"} from Secrets Manager"#,
        )
        .and_then(|e| {
            check_secret_id(&e.secret_id)?;
            check_token(&e.client_request_token)?;
            Ok(e)
        })
        .map_err(|error| {
            Box::new(Refused {
                error,
                subject: Subject::unread(Function::Hook),
            })
        })?;
        match HookStep::parse(&e.step) {
            Ok(step) => Ok(Request::Hook(HookRequest {
                secret_id: e.secret_id,
                token: e.client_request_token,
                step,
            })),
            Err(error) => Err(Box::new(Refused {
                error,
                subject: Subject {
                    step: e.step,
                    secret_id: e.secret_id,
                    token: Some(e.client_request_token),
                },
            })),
        }
    }
}

/// The event of `rekey-create`, `rekey-test` and `rekey-finish`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PipelineEvent {
    secret_id: String,
    #[serde(default)]
    client_request_token: Option<String>,
    #[serde(default)]
    rotation_period: Option<String>,
    #[serde(default)]
    resume: bool,
}

impl CreateRequest {
    fn parse(payload: Value) -> Result<CreateRequest> {
        let expected = r#"{"SecretId", "ClientRequestToken"?, "RotationPeriod"?, "Resume"?}"#;
        let e = parse_event::<PipelineEvent>(payload, expected)?;
        check_secret_id(&e.secret_id)?;
        let token = e
            .client_request_token
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        check_token(&token)?;
        let period = match e.rotation_period {
            Some(p) => Some(
                crate::config::parse_duration("RotationPeriod", &p)
                    .map_err(|e| Error::InvalidEvent(e.to_string()))?,
            ),
            None => None,
        };
        Ok(CreateRequest {
            secret_id: e.secret_id,
            token,
            period,
            resume: e.resume,
        })
    }
}

impl TokenRequest {
    /// `rekey-test` and `rekey-finish` read only the SecretId and token
    /// (as before, the create-only fields are accepted and ignored).
    fn parse(payload: Value) -> Result<TokenRequest> {
        let expected = r#"{"SecretId", "ClientRequestToken"}"#;
        let e = parse_event::<PipelineEvent>(payload, expected)?;
        check_secret_id(&e.secret_id)?;
        let Some(token) = e.client_request_token else {
            return Err(Error::InvalidEvent(format!(
                "ClientRequestToken is missing: pass on the output of the previous state; expected {expected}"
            )));
        };
        check_token(&token)?;
        // The create-only fields are still checked, as one parser did.
        if let Some(p) = e.rotation_period {
            crate::config::parse_duration("RotationPeriod", &p)
                .map_err(|e| Error::InvalidEvent(e.to_string()))?;
        }
        Ok(TokenRequest {
            secret_id: e.secret_id,
            token,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CleanupEvent {
    #[serde(default)]
    secret_id: Option<String>,
    #[serde(default)]
    triage: Option<TriageEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TriageEvent {
    rotation_period: String,
    #[serde(default)]
    secret_ids: Option<Vec<String>>,
    #[serde(default)]
    next_token: Option<String>,
}

impl CleanupRequest {
    fn parse(payload: Value) -> Result<CleanupRequest> {
        let payload = match payload {
            Value::Null => Value::Object(Default::default()),
            p => p,
        };
        let expected =
            r#"{}, {"SecretId"} or {"Triage": {"RotationPeriod", "SecretIds"?, "NextToken"?}}"#;
        // A field given as null is a mistake, not a field left out (which
        // would sweep every secret).
        if let Some(field) = ["SecretId", "Triage"]
            .into_iter()
            .find(|f| payload.get(f).is_some_and(Value::is_null))
        {
            return Err(Error::InvalidEvent(format!(
                "{field} is null; expected {expected}"
            )));
        }
        let e = parse_event::<CleanupEvent>(payload, expected)?;
        match (e.secret_id, e.triage) {
            (None, None) => Ok(CleanupRequest::All),
            (Some(id), None) => {
                check_secret_id(&id)?;
                Ok(CleanupRequest::One(id))
            }
            (None, Some(t)) => t.parse().map(CleanupRequest::Triage),
            (Some(_), Some(_)) => Err(Error::InvalidEvent(format!(
                "give SecretId or Triage, not both; expected {expected}"
            ))),
        }
    }
}

impl TriageEvent {
    fn parse(self) -> Result<TriageRequest> {
        let period = crate::config::parse_duration("RotationPeriod", &self.rotation_period)
            .map_err(|e| Error::InvalidEvent(e.to_string()))?;
        let secret_ids = match self.secret_ids {
            None => Vec::new(),
            Some(ids) if ids.is_empty() => {
                return Err(Error::InvalidEvent(
                    "SecretIds is empty: name at least one secret, or leave SecretIds out to sweep every managed secret".into(),
                ))
            }
            Some(ids) if ids.len() > MAX_SECRET_IDS => {
                return Err(Error::InvalidEvent(format!(
                    "SecretIds names {} secrets; at most {MAX_SECRET_IDS} at once",
                    ids.len()
                )))
            }
            Some(ids) => ids,
        };
        if !secret_ids.is_empty() && self.next_token.is_some() {
            return Err(Error::InvalidEvent(
                "give SecretIds or NextToken, not both".into(),
            ));
        }
        if self.next_token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::InvalidEvent(
                "NextToken is empty: pass on the previous answer's Next as it is".into(),
            ));
        }
        for id in &secret_ids {
            check_secret_id(id)?;
        }
        Ok(TriageRequest {
            rotation_period: self.rotation_period,
            period,
            secret_ids,
            next_token: self.next_token,
        })
    }
}

fn parse_event<T: DeserializeOwned>(payload: Value, expected: &str) -> Result<T> {
    if !payload.is_object() {
        return Err(Error::InvalidEvent(format!(
            "expected a JSON object {expected}"
        )));
    }
    serde_json::from_value(payload)
        .map_err(|e| Error::InvalidEvent(format!("{e}; expected {expected}")))
}

fn check_secret_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_SECRET_ID || id.chars().any(char::is_control) {
        return Err(Error::InvalidEvent(format!(
            "SecretId must be a secret name or ARN of 1 to {MAX_SECRET_ID} printable characters"
        )));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<()> {
    if !(32..=64).contains(&token.len())
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::InvalidEvent(
            "ClientRequestToken must be 32 to 64 letters, digits or '-' (a UUID)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

    fn refused(function: Function, payload: Value) -> Refused {
        *Request::parse(function, payload).expect_err("refused")
    }

    #[test]
    fn each_function_parses_its_event() {
        let hook = json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": "testSecret"});
        assert_eq!(
            Request::parse(Function::Hook, hook).unwrap(),
            Request::Hook(HookRequest {
                secret_id: "s".into(),
                token: TOKEN.into(),
                step: HookStep::Test,
            })
        );
        let create = json!({"SecretId": "s", "RotationPeriod": "30d", "Resume": true});
        let Request::Create(c) = Request::parse(Function::Create, create).unwrap() else {
            panic!("not a create request")
        };
        assert_eq!(c.period, Some(Duration::from_secs(30 * 86_400)));
        assert!(c.resume);
        assert!(check_token(&c.token).is_ok(), "a token was made");
        let pass_on = json!({"SecretId": "s", "ClientRequestToken": TOKEN});
        for (function, wrap) in [
            (Function::Test, Request::Test as fn(TokenRequest) -> Request),
            (Function::Finish, Request::Finish),
        ] {
            let request = Request::parse(function, pass_on.clone()).unwrap();
            assert_eq!(request.function(), function);
            assert_eq!(
                request,
                wrap(TokenRequest {
                    secret_id: "s".into(),
                    token: TOKEN.into()
                })
            );
        }
        assert_eq!(
            Request::parse(Function::Cleanup, Value::Null).unwrap(),
            Request::Cleanup(CleanupRequest::All)
        );
        assert_eq!(
            Request::parse(
                Function::Cleanup,
                json!({"Triage": {"RotationPeriod": "90d", "NextToken": "n"}})
            )
            .unwrap(),
            Request::Cleanup(CleanupRequest::Triage(TriageRequest {
                rotation_period: "90d".into(),
                period: Duration::from_secs(90 * 86_400),
                secret_ids: vec![],
                next_token: Some("n".into()),
            }))
        );
    }

    #[test]
    fn a_refusal_keeps_what_could_be_read() {
        let r = refused(
            Function::Hook,
            json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": "rotate"}),
        );
        assert_eq!(r.error.kind(), "InvalidEvent");
        assert!(r.error.to_string().contains("unknown Step \"rotate\""));
        assert_eq!(
            r.subject,
            Subject {
                step: "rotate".into(),
                secret_id: "s".into(),
                token: Some(TOKEN.into()),
            }
        );
        let r = refused(Function::Finish, json!({"SecretId": "s"}));
        assert!(r
            .error
            .to_string()
            .contains("ClientRequestToken is missing"));
        assert_eq!(r.subject, Subject::unread(Function::Finish));
    }

    #[test]
    fn subjects_name_the_function_or_the_hooks_step() {
        let sweep = Request::Cleanup(CleanupRequest::All);
        assert_eq!(sweep.subject().secret_id, "*");
        assert_eq!(sweep.subject().step, "cleanup");
        let test = Request::Test(TokenRequest {
            secret_id: "s".into(),
            token: TOKEN.into(),
        });
        assert_eq!(test.subject().step, "test");
        assert_eq!(test.subject().token.as_deref(), Some(TOKEN));
    }
}
