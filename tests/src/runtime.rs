//! A local Lambda Runtime API: runs a built function binary the way Lambda
//! does (`GET /runtime/invocation/next`, then `POST .../response` or
//! `.../error`), hands it events one at a time, and collects what it
//! answered and what it logged. It also measures what a benchmark needs:
//! the time from spawn to the first `next` (init) and to the first answer,
//! and the process's peak memory and CPU time.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

/// What one invocation returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The function's response.
    Ok(Value),
    /// `{"errorType", "errorMessage"}` as the runtime reported it.
    Err(Value),
}

impl Outcome {
    /// The error's `errorType`, or `None` when the invocation succeeded.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Outcome::Err(v) => v["errorType"].as_str(),
            Outcome::Ok(_) => None,
        }
    }

    /// The response; panics, showing the error, if the invocation failed.
    pub fn unwrap(self) -> Value {
        match self {
            Outcome::Ok(v) => v,
            Outcome::Err(e) => panic!("invocation failed: {e}"),
        }
    }
}

/// What the process used, from the kernel's accounting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// CPU time in user mode, every thread, from spawn to exit.
    pub user: Duration,
    /// CPU time in the kernel on the process's behalf.
    pub sys: Duration,
    /// Peak resident memory (`VmHWM`) in KiB, read just before the process
    /// was stopped; `None` if it had already exited.
    pub peak_rss_kib: Option<u64>,
}

/// The result of running a binary over some events.
#[derive(Debug)]
pub struct Run {
    /// What each invocation returned, in order.
    pub outcomes: Vec<Outcome>,
    /// The process's stdout and stderr.
    pub logs: String,
    /// The body of `/runtime/init/error`, if the function failed to start.
    pub init_error: Option<Value>,
    /// Spawn to the first `GET /runtime/invocation/next`.
    pub init: Option<Duration>,
    /// Spawn to the first answer (response or error).
    pub first_answer: Option<Duration>,
    /// The CPU time and memory the process used.
    pub usage: Usage,
}

type Event = (String, Value);

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Value>>,
    first_next: OnceLock<Instant>,
    first_answer: OnceLock<Instant>,
    deadline: Duration,
}

/// A function binary running under the local Runtime API, like one Lambda
/// execution environment: it serves invocations one at a time until
/// [`Function::stop`].
pub struct Function {
    pid: i32,
    spawned: Instant,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    /// Set by the thread that reaps the process: its CPU times.
    exited: watch::Receiver<Option<(Duration, Duration)>>,
    output: Vec<std::thread::JoinHandle<String>>,
    server: tokio::task::JoinHandle<()>,
    invocations: usize,
}

impl Function {
    /// Starts `binary` with `env` (and the variables Lambda sets), giving
    /// each invocation `deadline` to run.
    pub async fn start(binary: &Path, env: &[(String, String)], deadline: Duration) -> Function {
        let (events, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(queue),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_next: OnceLock::new(),
            first_answer: OnceLock::new(),
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
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let spawned = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", binary.file_name().unwrap())
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let pid = child.id() as i32;
        let output = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .map(|mut pipe| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        })
        .collect();
        // The process is reaped here, not through `child`, to read its CPU
        // times; `child` is dropped without waiting.
        let (tx, exited) = watch::channel(None);
        std::thread::spawn(move || {
            let _ = tx.send(Some(reap(pid)));
        });
        drop(child);
        Function {
            pid,
            spawned,
            shared,
            events,
            exited,
            output,
            server,
            invocations: 0,
        }
    }

    /// Invokes the function with `event` and waits up to `limit` for its
    /// answer; `None` if it exited or ran out of time first.
    pub async fn invoke(&mut self, event: Value, limit: Duration) -> Option<Outcome> {
        let id = format!("req-{}", self.invocations);
        self.invocations += 1;
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        self.events.send((id, event)).ok()?;
        let mut exited = self.exited.clone();
        tokio::select! {
            answer = rx => answer.ok(),
            _ = exited.wait_for(Option::is_some) => None,
            _ = tokio::time::sleep(limit) => None,
        }
    }

    /// Spawn to the first `next` request, once the function has made it.
    pub fn init(&self) -> Option<Duration> {
        self.shared.first_next.get().map(|t| *t - self.spawned)
    }

    /// Spawn to the first answer, once there was one.
    pub fn first_answer(&self) -> Option<Duration> {
        self.shared.first_answer.get().map(|t| *t - self.spawned)
    }

    /// Stops the process and returns its output and what it used.
    pub async fn stop(mut self) -> (String, Usage) {
        let peak_rss_kib = peak_rss_kib(self.pid);
        self.kill();
        let (user, sys) = self
            .exited
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|t| *t)
            .unwrap_or_default();
        let mut logs = String::new();
        for reader in std::mem::take(&mut self.output) {
            logs += &tokio::task::spawn_blocking(move || reader.join().unwrap_or_default())
                .await
                .unwrap_or_default();
        }
        let usage = Usage {
            user,
            sys,
            peak_rss_kib,
        };
        (logs, usage)
    }

    /// Kills the process unless it has exited (and so been reaped: its pid
    /// cannot have been reused); the reaper thread collects it.
    fn kill(&self) {
        if self.exited.borrow().is_none() {
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// What the function reported to `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().unwrap().clone()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.server.abort();
        self.kill();
    }
}

fn duration(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// User + system CPU time of this process so far.
pub fn own_cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data the kernel fills in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    duration(u.ru_utime) + duration(u.ru_stime)
}

/// Waits for `pid` to exit and returns its user and system CPU time.
fn reap(pid: i32) -> (Duration, Duration) {
    loop {
        let mut status = 0;
        // SAFETY: `rusage` is plain data the kernel fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return (duration(usage.ru_utime), duration(usage.ru_stime));
        }
        if r == -1 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Default::default();
        }
    }
}

/// The process's peak resident memory so far, from `/proc`. (`ru_maxrss`
/// is not used: after a vfork-style spawn it can report the parent's peak.)
fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
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
    let until = Instant::now() + limit;
    let mut function = Function::start(binary, env, deadline).await;
    let mut outcomes = Vec::new();
    for event in events {
        let left = until.saturating_duration_since(Instant::now());
        match function.invoke(event, left).await {
            Some(outcome) => outcomes.push(outcome),
            None => break,
        }
    }
    let (init, first_answer) = (function.init(), function.first_answer());
    let init_error = function.init_error();
    let (logs, usage) = function.stop().await;
    Run {
        outcomes,
        logs,
        init_error,
        init,
        first_answer,
        usage,
    }
}

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let _ = s.first_next.set(Instant::now());
    let Some((id, event)) = s.events.lock().await.recv().await else {
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

fn answer(s: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    let _ = s.first_answer.set(Instant::now());
    if let Some(waiting) = s.waiting.lock().unwrap().remove(id) {
        let _ = waiting.send(outcome);
    }
    StatusCode::ACCEPTED
}

fn body_value(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    answer(&s, &id, Outcome::Ok(body_value(body)))
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    answer(&s, &id, Outcome::Err(body_value(body)))
}

async fn init_error(State(s): State<Arc<Shared>>, body: String) -> StatusCode {
    *s.init_error.lock().unwrap() = Some(body_value(body));
    StatusCode::ACCEPTED
}
