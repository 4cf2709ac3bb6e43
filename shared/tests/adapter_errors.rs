//! The AWS adapters' error mapping, without a server: the SDK clients get an
//! HTTP client that answers every request with a canned response (the
//! SDK's `HttpClient` extension point, as its `test-util` clients use it),
//! so each service error rekey tells apart is checked in milliseconds.
//!
//! Secrets Manager speaks JSON (`{"__type": code, "message": ...}`), IAM
//! speaks XML (`<ErrorResponse><Error><Code>`); both as the services send
//! them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use rekey::model::{Credential, ManagedSecret, Sensitive};
use rekey::ports::{KeyApi, Providers, Select, Vault};
use rekey::providers::{AwsClients, AwsIam, LiveProviders};
use rekey::vault::SecretsManager;
use rekey::Error;

/// A secret no error may quote.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// What the canned server answers: the operation (from `X-Amz-Target` or
/// the form's `Action`) -> status and body.
type Answer = dyn Fn(&str) -> (u16, String) + Send + Sync;

/// An HTTP client that never opens a connection: each request is answered
/// by `answer`, and counted.
#[derive(Clone)]
struct Canned {
    answer: Arc<Answer>,
    calls: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Canned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canned")
    }
}

impl HttpConnector for Canned {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let operation = match request.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or_default().to_owned(),
            None => {
                let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
                body.split('&')
                    .find_map(|p| p.strip_prefix("Action="))
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let (status, body) = (self.answer)(&operation);
        let json = body.starts_with('{');
        let mut response = HttpResponse::new(
            StatusCode::try_from(status).expect("a status code"),
            SdkBody::from(body),
        );
        response.headers_mut().insert(
            "content-type",
            if json {
                "application/x-amz-json-1.1"
            } else {
                "text/xml"
            },
        );
        response
            .headers_mut()
            .insert("x-amzn-requestid", "00000000-0000-0000-0000-000000000000");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Canned {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// An SDK configuration whose every call `answer` answers, one attempt per
/// call (no retries, no waiting), and the count of requests sent.
async fn sdk(
    answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> (SdkConfig, Arc<AtomicUsize>) {
    sdk_with(RetryConfig::disabled(), answer).await
}

/// [`sdk`] with `retry` instead.
async fn sdk_with(
    retry: RetryConfig,
    answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> (SdkConfig, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = Canned {
        answer: Arc::new(answer),
        calls: calls.clone(),
    };
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDCANNED",
            "canned",
            None,
            None,
            "canned",
        ))
        .endpoint_url("https://canned.invalid")
        .retry_config(retry)
        .http_client(SharedHttpClient::new(client))
        .load()
        .await;
    (config, calls)
}

/// A Secrets Manager error answer.
fn sm_error(status: u16, code: &str, message: &str) -> (u16, String) {
    let body = serde_json::json!({ "__type": code, "message": message });
    (status, body.to_string())
}

/// An IAM (query protocol) error answer.
fn iam_error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
        ),
    )
}

/// An IAM GetUser answer: a user under `path`, tagged `rekey:owner=owner`.
fn get_user(path: &str, owner: &str) -> (u16, String) {
    (
        200,
        format!(
            "<GetUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetUserResult><User>\
             <Path>{path}</Path><UserName>alice</UserName><UserId>AIDACANNED</UserId>\
             <Arn>arn:aws:iam::123456789012:user{path}alice</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate>\
             <Tags><member><Key>rekey:owner</Key><Value>{owner}</Value></member></Tags>\
             </User></GetUserResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetUserResponse>"
        ),
    )
}

fn assert_no_secret(err: &Error) {
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
}

mod secrets_manager {
    use super::*;

    #[tokio::test]
    async fn an_unknown_secret_is_secret_not_found() {
        let (sdk, calls) = sdk(|_| {
            sm_error(
                400,
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
            )
        })
        .await;
        let err = SecretsManager::new(&sdk)
            .describe("rekey/aws/alice")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::SecretNotFound { secret_id } if secret_id == "rekey/aws/alice"),
            "{err:?}"
        );
        assert_eq!(err.kind(), "SecretNotFound");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_missing_version_reads_as_none() {
        let (sdk, _) = sdk(|_| sm_error(400, "ResourceNotFoundException", "no such version")).await;
        let read = SecretsManager::new(&sdk)
            .read("rekey/aws/alice", Select::Stage("AWSPENDING"))
            .await
            .unwrap();
        assert!(read.is_none());
    }

    #[tokio::test]
    async fn throttling_is_retryable() {
        let (sdk, _) = sdk(|_| sm_error(400, "ThrottlingException", "Rate exceeded")).await;
        let err = SecretsManager::new(&sdk)
            .describe("rekey/aws/alice")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ServiceUnavailable", "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("ThrottlingException"), "{err}");
    }

    #[tokio::test]
    async fn access_denied_is_a_service_error_with_its_code() {
        let message = "User: arn:aws:sts::123456789012:assumed-role/rekey is not authorized to perform: secretsmanager:TagResource";
        let (sdk, _) = sdk(move |_| sm_error(400, "AccessDeniedException", message)).await;
        let err = SecretsManager::new(&sdk)
            .tag(
                "rekey/aws/alice",
                &[("rekey:created:AKIA1".into(), "now".into())],
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ServiceError", "{err}");
        assert!(!err.is_retryable());
        match &err {
            Error::Service {
                service,
                operation,
                code,
                message: m,
                ..
            } => {
                assert_eq!((*service, *operation), ("Secrets Manager", "TagResource"));
                assert_eq!(code, "AccessDeniedException");
                assert_eq!(m, message, "the service's message is kept");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_store_never_quotes_the_secret() {
        // A service message that echoes the request must not reach the error.
        let (sdk, _) = sdk(|_| {
            sm_error(
                400,
                "InvalidRequestException",
                &format!("cannot store {{\"SecretAccessKey\":\"{SECRET}\"}}"),
            )
        })
        .await;
        let value = Sensitive::new(format!("{{\"SecretAccessKey\":\"{SECRET}\"}}"));
        let err = SecretsManager::new(&sdk)
            .put_pending("rekey/aws/alice", "token-1", &value)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ServiceError");
        assert!(err.to_string().contains("InvalidRequestException"), "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_server_fault_is_retryable() {
        let (sdk, _) = sdk(|_| sm_error(500, "InternalServiceError", "try again")).await;
        let err = SecretsManager::new(&sdk).list_page(None).await.unwrap_err();
        assert_eq!(err.kind(), "ServiceUnavailable", "{err}");
    }
}

mod iam {
    use super::*;

    const OWNER: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/aws/alice-AbCdEf";

    async fn aws_iam(
        answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
    ) -> (AwsIam, Arc<AtomicUsize>) {
        let (sdk, calls) = sdk(answer).await;
        (AwsIam::new(&AwsClients::new(&sdk), "/rekey/"), calls)
    }

    #[tokio::test]
    async fn an_unknown_user_is_user_not_found() {
        let (iam, _) = aws_iam(|_| {
            iam_error(
                404,
                "NoSuchEntity",
                "The user with name alice cannot be found.",
            )
        })
        .await;
        for err in [
            iam.ensure_managed("alice", OWNER).await.unwrap_err(),
            iam.list_keys("alice").await.unwrap_err(),
            iam.create_key("alice").await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::UserNotFound { user } if user == "alice"),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_user_the_role_may_not_read_is_not_managed() {
        let (iam, _) = aws_iam(|_| {
            iam_error(
                403,
                "AccessDenied",
                "not authorized to perform: iam:GetUser",
            )
        })
        .await;
        let err = iam.ensure_managed("alice", OWNER).await.unwrap_err();
        assert_eq!(err.kind(), "UserNotManaged", "{err}");
        assert!(
            err.to_string().contains("REKEY_MANAGED_USER_PATH /rekey/"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_member_role_that_may_not_read_the_user_names_its_account() {
        let (sdk, _) = sdk(|_| {
            iam_error(
                403,
                "AccessDenied",
                "not authorized to perform: iam:GetUser",
            )
        })
        .await;
        let iam = AwsIam::in_account(&AwsClients::new(&sdk), "/rekey/", "111111111111");
        let err = iam.ensure_managed("alice", OWNER).await.unwrap_err();
        assert_eq!(err.kind(), "UserNotManaged", "{err}");
        let message = err.to_string();
        assert!(
            message.contains("member role in account 111111111111")
                && message.contains("REKEY_MANAGED_USER_PATH /rekey/"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_user_outside_the_managed_path_is_not_managed() {
        let (iam, _) = aws_iam(|op| match op {
            "GetUser" => get_user("/elsewhere/", OWNER),
            _ => panic!("only GetUser is called, not {op}"),
        })
        .await;
        let err = iam.ensure_managed("alice", OWNER).await.unwrap_err();
        assert_eq!(err.kind(), "UserNotManaged", "{err}");
        assert!(err.to_string().contains("/elsewhere/"), "{err}");
        // Under the path and enrolled to this secret, the same user is managed.
        let (iam, _) = aws_iam(|_| get_user("/rekey/", OWNER)).await;
        iam.ensure_managed("alice", OWNER).await.unwrap();
        let err = iam
            .ensure_managed("alice", "rekey/aws/someone-else")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "SecretNotOwner", "{err}");
    }

    #[tokio::test]
    async fn the_key_limit_is_key_limit_reached() {
        let (iam, _) = aws_iam(|_| {
            iam_error(
                409,
                "LimitExceeded",
                "Cannot exceed quota for AccessKeysPerUser: 2",
            )
        })
        .await;
        let err = iam.create_key("alice").await.unwrap_err();
        assert_eq!(err.kind(), "KeyLimitReached", "{err}");
        assert!(err.to_string().contains("alice"), "{err}");
    }

    #[tokio::test]
    async fn create_key_alone_is_never_retried() {
        // With the functions' retries (backoff shortened), a transient
        // fault is retried on every call but CreateAccessKey: a retry after
        // a lost answer would make a second key.
        let retry = rekey::sdk::retry_config().with_initial_backoff(Duration::from_millis(1));
        let (sdk, calls) = sdk_with(retry, |_| iam_error(500, "ServiceFailure", "try again")).await;
        let iam = AwsIam::new(&AwsClients::new(&sdk), "/rekey/");
        assert!(iam.list_keys("alice").await.unwrap_err().is_retryable());
        assert_eq!(
            calls.swap(0, Ordering::SeqCst),
            5,
            "ListAccessKeys is retried"
        );
        assert!(iam.create_key("alice").await.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "CreateAccessKey is not");
    }

    #[tokio::test]
    async fn a_failed_create_never_quotes_the_answer() {
        let (iam, _) =
            aws_iam(|_| iam_error(500, "ServiceFailure", &format!("lost key {SECRET}"))).await;
        let err = iam.create_key("alice").await.unwrap_err();
        assert_eq!(err.kind(), "ServiceUnavailable", "{err}");
        assert!(err.to_string().contains("CreateAccessKey"), "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_probe_refused_by_sts_is_a_service_error() {
        let (sdk, _) = sdk(|_| {
            iam_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        })
        .await;
        let probe = Credential {
            access_key_id: "AKIANEWKEY".into(),
            secret: Sensitive::new(SECRET),
        };
        let err = AwsClients::new(&sdk)
            .whoami(&probe, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ServiceError", "{err}");
        assert!(err.to_string().contains("InvalidClientTokenId"), "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_member_role_sts_refuses_is_member_account_unreachable() {
        let (sdk, calls) = sdk(|_| {
            iam_error(
                403,
                "AccessDenied",
                "User is not authorized to perform: sts:AssumeRole",
            )
        })
        .await;
        let role = "arn:aws:iam::111111111111:role/rekey/rekey-member";
        let err = AwsClients::assume(&sdk, "111111111111", role, "ext-id")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "MemberAccountUnreachable", "{err}");
        let message = err.to_string();
        assert!(
            message.contains("111111111111")
                && message.contains(role)
                && message.contains("AccessDenied"),
            "{message}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one AssumeRole, no retry");
    }

    #[tokio::test]
    async fn a_throttled_assume_role_is_retryable_and_quotes_nothing() {
        let (sdk, _) = sdk(|_| iam_error(400, "Throttling", &format!("slow down {SECRET}"))).await;
        let role = "arn:aws:iam::111111111111:role/rekey/rekey-member";
        let err = AwsClients::assume(&sdk, "111111111111", role, "ext-id")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ServiceUnavailable", "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_member_role_is_assumed_once_per_account() {
        let assumed = Arc::new(AtomicUsize::new(0));
        let counted = assumed.clone();
        let (sdk, _) = sdk(move |operation| {
            assert_eq!(operation, "AssumeRole", "opening makes no other call");
            counted.fetch_add(1, Ordering::SeqCst);
            (
                200,
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
                 <Credentials><AccessKeyId>ASIAMEMBER</AccessKeyId><SecretAccessKey>member</SecretAccessKey>\
                 <SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                 <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/rekey-member/rekey</Arn>\
                 <AssumedRoleId>AROAMEMBER:rekey</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>\
                 <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>"
                    .to_owned(),
            )
        })
        .await;
        let config = rekey::Config::from_lookup(|name| match name {
            "REKEY_MANAGED_USER_PATH" => Some("/rekey/".into()),
            "REKEY_MEMBER_ACCOUNTS" => Some("111111111111".into()),
            "REKEY_MEMBER_EXTERNAL_ID" => Some("ext-id".into()),
            _ => None,
        })
        .unwrap();
        let providers = LiveProviders::new(&sdk, &config);
        let secret =
            ManagedSecret::parse(r#"{"UserName":"alice","AccountId":"111111111111"}"#).unwrap();
        let (a, b, c) = tokio::join!(
            providers.open(&secret, None),
            providers.open(&secret, None),
            providers.open(&secret, None),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        providers.open(&secret, None).await.unwrap();
        assert_eq!(
            assumed.load(Ordering::SeqCst),
            1,
            "one AssumeRole per account"
        );
    }
}
