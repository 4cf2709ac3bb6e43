//! The moto_server this test process runs (started on first use, on
//! loopback, with signature checking on), the support servers of
//! `tests/support/` in general, and SDK configurations that reach moto.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_credential_types::Credentials;
use rekey::model::{Credential, Sensitive};
use serde_json::Value;

/// The region every SDK client of the tests uses.
pub const REGION: &str = "us-east-1";

/// The project's root (the workspace).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The Python with moto installed: `REKEY_PYTHON`, else the project's venv.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("REKEY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test (it creates the venv with moto)",
        venv.display()
    );
    venv
}

/// Member accounts moto starts with: each has rekey's member role
/// (`/rekey/rekey-member`) and a test admin role (`/rekey-test-admin`).
pub const MEMBER_ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
/// A member account whose member role grants nothing.
pub const DENYING_ACCOUNT: &str = "333333333333";
/// The external id the tests' deployment uses (moto checks none).
pub const MEMBER_EXTERNAL_ID: &str = "rekey-tests";

/// A running moto_server and the admin key that signs every request.
pub struct Moto {
    /// Whether a policy gate (`tests/support/policy_gate.py`) authorizes
    /// every call in front of it ([`moto_behind_policy_gate`]).
    pub policy_gate: bool,
    /// Where moto listens (`http://127.0.0.1:<port>`).
    pub endpoint: String,
    /// The admin key moto checks signatures against.
    pub admin: Credential,
    child: Mutex<Child>,
}

impl Moto {
    /// moto_server's process id (to measure its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }
}

static POLICY_GATE: AtomicBool = AtomicBool::new(false);

/// The moto_server of this test process, started on first use. It stops
/// when the process exits (it watches its stdin, which this process holds).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let members = MEMBER_ACCOUNTS.join(",");
        let mut args = vec![
            "--member-accounts",
            &members,
            "--denying-accounts",
            DENYING_ACCOUNT,
        ];
        let gated = POLICY_GATE.load(Ordering::SeqCst);
        if gated {
            args.push("--policy-gate");
        }
        let mut moto = start_moto(&args);
        moto.policy_gate = gated;
        moto
    })
}

/// The moto_server of this test process with the policy gate in front of
/// it: every call is authorized against its signer's IAM policies, its
/// real resource and its conditions (`tests/support/policy_gate.py`). A test
/// binary that wants it calls this before anything starts moto.
pub fn moto_behind_policy_gate() -> &'static Moto {
    POLICY_GATE.store(true, Ordering::SeqCst);
    let moto = moto();
    assert!(
        moto.policy_gate,
        "moto was started without the policy gate: call moto_behind_policy_gate() first"
    );
    moto
}

/// Starts a server of `tests/support/` that prints one JSON line when it is
/// ready and stops when this process exits (it watches its stdin, which
/// this process holds open). Returns the process and that line.
pub(crate) fn start_support_server(script: &str, extra: &[&str]) -> (Child, Value) {
    let path = workspace_root().join("tests/support").join(script);
    let mut child = Command::new(python())
        .arg(path)
        .arg("--until-stdin-closes")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let stdout = child.stdout.take().expect("server stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read the first line of {script}: {e}"));
    let info: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{script} did not start ({e}): {line:?}"));
    // Keep stdin open for the life of the process: the server exits on EOF.
    let stdin = child.stdin.take().expect("server stdin");
    std::mem::forget(stdin);
    (child, info)
}

fn start_moto(extra: &[&str]) -> Moto {
    let (child, info) = start_support_server("moto_server.py", extra);
    Moto {
        policy_gate: false,
        endpoint: info["endpoint"].as_str().unwrap().to_owned(),
        admin: Credential {
            access_key_id: info["access_key_id"].as_str().unwrap().to_owned(),
            secret: Sensitive::new(info["secret_access_key"].as_str().unwrap()),
        },
        child: Mutex::new(child),
    }
}

/// An SDK configuration signed by `credential`, pointed at moto.
pub async fn sdk_config(credential: &Credential) -> aws_config::SdkConfig {
    sdk_config_at(&moto().endpoint, credential).await
}

/// An SDK configuration signed by `credential`, pointed at `endpoint`, as
/// the functions load theirs (their retry settings and HTTP client).
pub async fn sdk_config_at(endpoint: &str, credential: &Credential) -> aws_config::SdkConfig {
    rekey::sdk::loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(Credentials::new(
            &credential.access_key_id,
            credential.secret.expose(),
            None,
            None,
            "rekey-tests",
        ))
        .load()
        .await
}
