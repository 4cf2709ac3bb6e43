//! A local Lambda Runtime API: runs a built function binary the way Lambda
//! does (`GET /runtime/invocation/next`, then `POST .../response` or
//! `.../error`), feeds it events one after another, and collects what it
//! answered and what it logged.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// What one invocation returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ok(Value),
    /// `{"errorType", "errorMessage"}` as the runtime reported it.
    Err(Value),
}

impl Outcome {
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Outcome::Err(v) => v["errorType"].as_str(),
            Outcome::Ok(_) => None,
        }
    }

    pub fn unwrap(self) -> Value {
        match self {
            Outcome::Ok(v) => v,
            Outcome::Err(e) => panic!("invocation failed: {e}"),
        }
    }
}

/// The result of running a binary over some events.
#[derive(Debug)]
pub struct Run {
    pub outcomes: Vec<Outcome>,
    /// The process's stdout and stderr.
    pub logs: String,
    /// The body of `/runtime/init/error`, if the function failed to start.
    pub init_error: Option<Value>,
}

struct Shared {
    events: Mutex<VecDeque<(String, Value)>>,
    results: mpsc::UnboundedSender<(String, Outcome)>,
    init_error: Mutex<Option<Value>>,
    deadline: Duration,
}

/// Runs `binary` with `env` and invokes it once per event, in order, each
/// with `deadline` to run. Stops the process when every event is answered,
/// when it exits, or after `limit`.
pub async fn invoke(
    binary: &Path,
    env: &[(String, String)],
    events: Vec<Value>,
    deadline: Duration,
    limit: Duration,
) -> Run {
    let count = events.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        events: Mutex::new(
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (format!("req-{i}"), e))
                .collect(),
        ),
        results: tx,
        init_error: Mutex::new(None),
        deadline,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", binary.file_name().unwrap())
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let mut answers: Vec<(String, Outcome)> = Vec::new();
    let collect = async {
        while answers.len() < count {
            tokio::select! {
                Some(a) = rx.recv() => answers.push(a),
                _ = child.wait() => break,
            }
        }
    };
    let _ = tokio::time::timeout(limit, collect).await;
    let _ = child.kill().await;
    server.abort();
    let logs = format!(
        "{}{}",
        out_task.await.unwrap_or_default(),
        err_task.await.unwrap_or_default()
    );
    answers.sort_by_key(|(id, _)| id[4..].parse::<usize>().unwrap_or(usize::MAX));
    let init_error = shared.init_error.lock().unwrap().clone();
    Run {
        outcomes: answers.into_iter().map(|(_, o)| o).collect(),
        logs,
        init_error,
    }
}

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let item = s.events.lock().unwrap().pop_front();
    let Some((id, event)) = item else {
        // No more work: hold the request like Lambda does between events.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + s.deadline;
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.as_millis().to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:rekey-test"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    (StatusCode::OK, headers, Json(event))
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = s.results.send((id, Outcome::Ok(v)));
    StatusCode::ACCEPTED
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = s.results.send((id, Outcome::Err(v)));
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: String) -> StatusCode {
    *s.init_error.lock().unwrap() =
        Some(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    StatusCode::ACCEPTED
}
