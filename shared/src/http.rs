//! Calls to the providers without an AWS SDK: POSTs with a time limit and
//! a bound on the answer, sent through the AWS SDK's own connector
//! ([`crate::sdk::shared_connector`]: its TLS set-up, root certificates and
//! connection pool), so a function holds one HTTP stack whatever it
//! rotates.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};

/// An HTTPS client for the providers without an AWS SDK (Alibaba, SCloud).
/// Clones are cheap and share the SDK's connector.
#[derive(Clone, Debug)]
pub struct HttpClient {
    connector: SharedHttpConnector,
}

/// A provider's answer: its status and body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code, e.g. 200.
    pub status: u16,
    /// The raw response body, usually the provider's JSON answer.
    pub body: Bytes,
}

/// Why a call got no answer at all: worth retrying, except an invalid
/// request. Each carries the HTTP stack's own words, which never hold the
/// request's body.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    /// The request could not be built (a malformed URL).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No connection, TLS failure, or the connection dropped.
    #[error("no answer: {0}")]
    Unreachable(String),
    /// The answer's body stopped before its end.
    #[error("the answer was cut off: {0}")]
    CutOff(String),
    /// Nothing came back within the call's time limit.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The answer's body is longer than rekey reads (not worth retrying).
    #[error("the answer is longer than {0} bytes, the most rekey reads")]
    TooLarge(usize),
}

/// The longest answer body rekey reads from a provider: 1 MiB (a RAM or
/// SCloud answer is a few hundred bytes; more is not an answer to trust).
pub const MAX_ANSWER: usize = 1 << 20;

impl HttpClient {
    /// A client over `connector` (the SDK's: [`crate::sdk::shared_connector`]).
    pub fn new(connector: SharedHttpConnector) -> Self {
        HttpClient { connector }
    }

    /// POSTs an encoded form to `url`. An `Err` is a failure to get an
    /// answer at all (connection, TLS, time limit): worth retrying, except
    /// an answer over [`MAX_ANSWER`].
    pub async fn post_form(
        &self,
        url: &str,
        form: String,
        time_limit: Duration,
    ) -> Result<Response, NoAnswer> {
        let content_type = [(CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")];
        self.post(url, &content_type, Bytes::from(form), time_limit)
            .await
    }

    /// POSTs `body` to `url` with `headers` (besides `accept`,
    /// `user-agent`, and `host` unless given).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        time_limit: Duration,
    ) -> Result<Response, NoAnswer> {
        let mut request = hyper::Request::post(url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("rekey/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(SdkBody::from(body))
            .map_err(|e| NoAnswer::InvalidRequest(e.to_string()))?;
        let request =
            HttpRequest::try_from(request).map_err(|e| NoAnswer::InvalidRequest(e.to_string()))?;
        let exchange = async {
            let response = self
                .connector
                .call(request)
                .await
                .map_err(|e| NoAnswer::Unreachable(DisplayErrorContext(&e).to_string()))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| match e.downcast::<LengthLimitError>() {
                    Ok(_) => NoAnswer::TooLarge(MAX_ANSWER),
                    Err(e) => NoAnswer::CutOff(e.to_string()),
                })?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(time_limit, exchange)
            .await
            .map_err(|_| NoAnswer::TimedOut(time_limit))?
    }
}
