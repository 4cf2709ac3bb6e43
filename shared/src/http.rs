//! A small HTTPS client for providers without an AWS SDK: form POSTs with
//! a time limit. It shares the SDK's TLS stack (rustls with aws-lc-rs and
//! the system's root certificates) and is built on first use, so functions
//! that only rotate AWS keys never load it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// An HTTPS client for the providers without an AWS SDK (Alibaba, SCloud).
/// Clones are cheap and share one connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A provider's answer: its status and body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code, e.g. 200.
    pub status: u16,
    /// The raw response body, usually the provider's JSON answer.
    pub body: Bytes,
}

impl HttpClient {
    /// A client that trusts the system's root certificates; fails when they
    /// cannot be loaded.
    pub fn new() -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient { client })
    }

    /// POSTs an encoded form to `url`. An `Err` is a failure to get an
    /// answer at all (connection, TLS, time limit): worth retrying.
    pub async fn post_form(
        &self,
        url: &str,
        form: String,
        time_limit: Duration,
    ) -> Result<Response, String> {
        let request = hyper::Request::post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("rekey/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| format!("invalid request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the answer was cut off: {e}"))?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(time_limit, exchange)
            .await
            .map_err(|_| format!("no answer within {time_limit:?}"))?
    }
}
