//! The machine, the artifacts, and the report: a table for people
//! (`.md`) and the raw figures (`.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::calls::StepCalls;
use crate::cold::{Cold, Sample};
use crate::fleet::Fleet;
use crate::FUNCTIONS;

/// The targets, in decimal units as Lambda states its limits.
const INIT_TARGET_MS: f64 = 20.0;
const RSS_TARGET_MB: f64 = 30.0;
const ZIP_TARGET_MB: f64 = 6.0;

#[derive(Serialize)]
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub moto: String,
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mem_kib: f64 = field(&meminfo, "MemTotal")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(0.0);
    let python = rekey_testkit::python();
    Machine {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu: field(&cpuinfo, "model name"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: command_line("uname", &["-sr"]),
        rustc: command_line("rustc", &["-V"]),
        moto: command_line(
            &python.to_string_lossy(),
            &["-c", "import moto; print(moto.__version__)"],
        ),
    }
}

/// The settings the functions ran with, secrets left out.
pub fn settings(env: &[(String, String)]) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with("REKEY_") || k == "AWS_REGION")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What setting up TLS for a provider client costs: the aws-lc-rs provider
/// and the system's root certificates (the AWS SDK's stack, and rekey's
/// client for the other providers); and the first read of the kernel's
/// entropy source, which seeds hash maps and the TLS and signing code.
#[derive(Serialize)]
pub struct TlsSetup {
    pub first_client_us: u64,
    pub client_median_us: u64,
    pub first_getrandom_us: u64,
}

pub fn tls_setup() -> TlsSetup {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_micros() as u64
    };
    let mut buf = [0u8; 32];
    // SAFETY: writes at most 32 bytes into `buf`.
    let first_getrandom_us = time(&mut || unsafe {
        libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0);
    });
    let mut new_client = || {
        rekey::http::HttpClient::new().expect("the system's root certificates load");
    };
    let first_client_us = time(&mut new_client);
    let (client_median_us, _) = median_p90((0..10).map(|_| time(&mut new_client)));
    TlsSetup {
        first_client_us,
        client_median_us,
        first_getrandom_us,
    }
}

#[derive(Serialize)]
pub struct Artifact {
    pub function: &'static str,
    /// `aarch64` or `x86_64`, from the ELF header.
    pub arch: String,
    pub bootstrap_bytes: u64,
    pub zip_bytes: Option<u64>,
    /// The host release binary that the timings ran, and its architecture.
    pub host_binary_bytes: u64,
    pub host_arch: String,
}

fn elf_arch(path: &Path) -> String {
    let header = std::fs::read(path).unwrap_or_default();
    match header.get(18..20) {
        Some([0xb7, 0]) => "aarch64".into(),
        Some([0x3e, 0]) => "x86_64".into(),
        _ => "unknown".into(),
    }
}

pub fn artifacts(lambda: &Path, setup: &crate::Setup) -> Vec<Artifact> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    FUNCTIONS
        .iter()
        .map(|&function| {
            let dir = lambda.join(format!("rekey-{function}"));
            let bootstrap = dir.join("bootstrap");
            Artifact {
                function,
                arch: elf_arch(&bootstrap),
                bootstrap_bytes: size(&bootstrap).unwrap_or_else(|| {
                    panic!("{} is missing: run scripts/bench", bootstrap.display())
                }),
                zip_bytes: size(&dir.join("bootstrap.zip")),
                host_binary_bytes: size(&setup.binary(function)).unwrap_or(0),
                host_arch: elf_arch(&setup.binary(function)),
            }
        })
        .collect()
}

#[derive(Serialize)]
pub struct Report {
    pub machine: Machine,
    pub config: BTreeMap<String, String>,
    pub tls: TlsSetup,
    pub artifacts: Vec<Artifact>,
    pub cold: Cold,
    pub calls: Vec<StepCalls>,
    pub fleet: Option<Fleet>,
}

/// Median and 90th percentile (nearest rank).
fn median_p90(values: impl IntoIterator<Item = u64>) -> (u64, u64) {
    let mut v: Vec<u64> = values.into_iter().collect();
    v.sort_unstable();
    if v.is_empty() {
        return (0, 0);
    }
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.5), rank(0.9))
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn mb(bytes: f64) -> String {
    format!("{:.2}", bytes / 1e6)
}

/// "met" or how far over the target a figure is.
fn verdict(value: f64, target: f64) -> String {
    if value <= target {
        "met".into()
    } else {
        format!("**missed by {:.1} %**", (value / target - 1.0) * 100.0)
    }
}

/// The IAM request budget the fleet model assumes, requests per second.
const IAM_BUDGETS: [f64; 3] = [5.0, 10.0, 20.0];
/// rekey's share of it: the rest is left to people and other tools.
const REKEY_SHARE: f64 = 0.5;
const FLEET_USERS: f64 = 100_000.0;
/// A rotation's latency on AWS, assumed: three key tests 1 s apart (2 s),
/// some 18 API calls of ~50 ms (1 s), and waiting for IAM to propagate the
/// new key, which AWS does not bound (tools wait 10 to 60 s; rekey tests
/// until the key passes): about 5 s on average.
const AWS_ROTATION_SECONDS: f64 = 8.0;
/// IAM calls an old key costs after its rotation, assumed: the sweep
/// deactivates it once and deletes it once.
const RETIRE_IAM: usize = 2;

impl Report {
    pub fn write(&self, out: &Path) {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).expect("create the report's folder");
        }
        let json = serde_json::to_string_pretty(self).expect("the report serialises");
        std::fs::write(out.with_extension("json"), json + "\n").expect("write the JSON");
        std::fs::write(out.with_extension("md"), self.markdown()).expect("write the table");
    }

    fn samples(&self, function: &str) -> &[Sample] {
        self.cold
            .samples
            .get(function)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// IAM (rate-limited) and all calls of the steps of one path.
    fn path_calls(&self, path: &str) -> (usize, usize) {
        let steps = self.calls.iter().filter(|s| s.path == path);
        steps
            .flat_map(|s| s.calls.iter())
            .fold((0, 0), |(iam, all), (service, _, n, _)| {
                (iam + if service == "iam" { *n } else { 0 }, all + n)
            })
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let runs = self.samples("hook").len();
        let (arch, host_arch) = self
            .artifacts
            .first()
            .map_or(("unknown", "unknown"), |a| (&a.arch, &a.host_arch));
        let _ = writeln!(
            md,
            "# Performance\n\n\
             Written by `scripts/bench` on {date}. Do not edit by hand: run the \
             benchmark again.\n\n\
             **Machine:** {cpu}, {cores} cores, {mem} GiB, {kernel}; {rustc}; moto {moto}.\n\n\
             **How:** the host's release binaries ({host_arch}, the same release profile \
             as the Lambda build) run under a local Lambda Runtime API (`tests/src/runtime.rs`) \
             against moto_server on 127.0.0.1 with signature checking on, with the settings \
             below. Every sample is a fresh process doing a real rotation step. Timings are \
             wall-clock from `spawn`; CPU time is the kernel's accounting of the process \
             (`wait4`); peak memory is `VmHWM`. Artifact sizes are for `cargo lambda build \
             --release` ({arch}). Targets are not asserted by any test.\n",
            date = m.date,
            cpu = m.cpu,
            cores = m.cores,
            mem = m.memory_gib,
            kernel = m.kernel,
            rustc = m.rustc,
            moto = m.moto,
        );

        // The summary against the targets.
        let _ = writeln!(
            md,
            "## Summary ({runs} cold starts per function)\n\n\
             | function | init median / p90 (ms) | cold invocation median / p90 (ms) | peak RSS max (MB) | CPU median (ms) | zip (MB) | bootstrap (MB) |\n\
             |---|---|---|---|---|---|---|"
        );
        let mut worst = (0u64, 0u64, 0u64);
        for a in &self.artifacts {
            let s = self.samples(a.function);
            let (init, init90) = median_p90(s.iter().map(|s| s.init_us));
            let (first, first90) = median_p90(s.iter().map(|s| s.first_answer_us));
            let (cpu, _) = median_p90(s.iter().map(|s| s.cpu_us));
            let rss = s.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
            worst = (
                worst.0.max(init90),
                worst.1.max(rss),
                worst.2.max(a.zip_bytes.unwrap_or(0)),
            );
            let _ = writeln!(
                md,
                "| rekey-{} | {} / {} | {} / {} | {} | {} | {} | {} |",
                a.function,
                ms(init),
                ms(init90),
                ms(first),
                ms(first90),
                mb(rss as f64 * 1024.0),
                ms(cpu),
                a.zip_bytes.map_or("n/a".into(), |z| mb(z as f64)),
                mb(a.bootstrap_bytes as f64),
            );
        }
        let _ = writeln!(
            md,
            "\n\"Cold invocation\" is spawn to the first answer: init plus the first \
             step, which also builds the HTTP connection. rekey-hook's process then \
             carries out the rest of its rotation (setSecret, testSecret, finishSecret): \
             its CPU and memory are for the whole rotation.\n\n\
             | target | worst figure | verdict |\n|---|---|---|\n\
             | init ≤ {INIT_TARGET_MS} ms (p90, every function) | {} ms | {} |\n\
             | peak RSS ≤ {RSS_TARGET_MB} MB (max, every function) | {} MB | {} |\n\
             | zip ≤ {ZIP_TARGET_MB} MB (every function) | {} MB | {} |\n",
            ms(worst.0),
            verdict(worst.0 as f64 / 1000.0, INIT_TARGET_MS),
            mb(worst.1 as f64 * 1024.0),
            verdict(worst.1 as f64 * 1024.0 / 1e6, RSS_TARGET_MB),
            mb(worst.2 as f64),
            verdict(worst.2 as f64 / 1e6, ZIP_TARGET_MB),
        );

        // Warm steps, and what set-up costs.
        let _ = writeln!(
            md,
            "## Cold and warm\n\n\
             rekey-hook's steps in a warm process (its second rotation), median / p90 (ms):\n\n\
             | step | warm |\n|---|---|"
        );
        for step in crate::HOOK_STEPS {
            let (w, w90) = median_p90(
                self.cold
                    .warm_hook_us
                    .get(step)
                    .into_iter()
                    .flatten()
                    .copied(),
            );
            let _ = writeln!(md, "| {step} | {} / {} |", ms(w), ms(w90));
        }
        let t = &self.tls;
        let _ = writeln!(
            md,
            "\nTLS set-up, measured in the bench's own release process: a client with \
             the aws-lc-rs provider and the system's root certificates (what the AWS SDK \
             and rekey's client for Alibaba and SCloud build) takes {} ms the first time \
             and {} ms after that; it is built once per process, on first use (rekey's \
             client only when a secret of another provider is handled). The first read \
             of the kernel's entropy source (`getrandom`, which seeds hash maps, TLS and \
             request signing) took {} µs: it did not block (it blocks only until the \
             kernel's pool is first initialised, early in boot).\n",
            ms(t.first_client_us),
            ms(t.client_median_us),
            t.first_getrandom_us,
        );

        // CPU per rotation.
        let median_cpu = |f: &str| median_p90(self.samples(f).iter().map(|s| s.cpu_us)).0;
        let hook_cpu = median_cpu("hook");
        // The three processes of one run belong to one rotation: sum, then
        // take the median.
        let pipeline_cpu = median_p90((0..runs).map(|i| {
            ["create", "test", "finish"]
                .iter()
                .map(|f| self.samples(f)[i].cpu_us)
                .sum()
        }))
        .0;
        let _ = writeln!(
            md,
            "## CPU time per rotation (user + system, function processes only)\n\n\
             | path | CPU (ms, median) |\n|---|---|\n\
             | hook: one cold process, four steps | {} |\n\
             | pipeline: rekey-create + rekey-test + rekey-finish, each cold | {} |\n\
             | rekey-cleanup, one secret, cold | {} |\n\n\
             Each cold process pays its own start (runtime, settings, SDK \
             configuration): most of the pipeline's extra CPU. The emulator's CPU is \
             not included; the fleet runs below show it.\n",
            ms(hook_cpu),
            ms(pipeline_cpu),
            ms(median_cpu("cleanup")),
        );

        // API calls.
        let _ = writeln!(
            md,
            "## API calls per rotation\n\n\
             Counted by the test kit's proxy between the functions and moto, for one \
             rotation with no faults. Every call has its reason; the bench stops if a \
             call has none. No function makes any call before its first `GET \
             /runtime/invocation/next` (checked for each; the bench stops otherwise).\n"
        );
        for (path, title) in [
            ("hook", "Hook path (Secrets Manager calls rekey-hook)"),
            (
                "pipeline",
                "Pipeline path (the state machine calls rekey-create, rekey-test, rekey-finish)",
            ),
            (
                "cleanup",
                "rekey-cleanup, one secret, nothing due (per secret per sweep)",
            ),
        ] {
            let (iam, all) = self.path_calls(path);
            let _ = writeln!(
                md,
                "### {title}: {all} calls, {iam} of them IAM\n\n\
                 | step | service | action | calls | why |\n|---|---|---|---|---|"
            );
            for s in self.calls.iter().filter(|s| s.path == path) {
                for (service, action, n, why) in &s.calls {
                    let _ = writeln!(md, "| {} | {service} | {action} | {n} | {why} |", s.step);
                }
            }
            md.push('\n');
        }

        self.fleet_section(&mut md);
        self.model_section(&mut md);

        let _ = writeln!(md, "## Settings of the measured functions\n");
        for (k, v) in &self.config {
            let _ = writeln!(md, "- `{k}={v}`");
        }
        md
    }

    fn fleet_section(&self, md: &mut String) {
        let Some(f) = &self.fleet else {
            return;
        };
        let _ = writeln!(
            md,
            "## Fleet: {} secrets through rekey-create, rekey-test, rekey-finish\n\n\
             Each level rotates its own {} secrets (all {} were made first, in {:.0} s, \
             so that moto holds as many users at every level; earlier levels leave \
             their new keys behind, and the levels run in order, once each). Concurrency c means c rotations at a \
             time and c warm processes of each function, as a Map with MaxConcurrency c \
             would have; processes start cold within the timed run. Rotations are checked \
             afterwards at the source (a spread of 20 per level: at most two keys, \
             AWSCURRENT authenticates and is new). moto serves every request from one \
             Python process (its threads share the GIL), and it checks each signature by \
             listing every IAM user and comparing their keys, so each request costs more \
             as the fleet grows: with thousands of users it is slower than with a few.\n\n\
             | concurrency | wall (s) | rotations/s | failed | CPU per rotation: rekey / moto (ms) | moto CPU (% of a core) | rekey CPU (% of a core) | bench CPU (% of a core) | max RSS (MB) | bottleneck |\n\
             |---|---|---|---|---|---|---|---|---|---|",
            f.secrets,
            f.secrets,
            f.secrets * f.levels.len(),
            f.setup_ms as f64 / 1000.0,
        );
        for l in &f.levels {
            let wall = l.wall_ms.max(1) as f64;
            let share = |cpu: u64| cpu as f64 / wall * 100.0;
            let bottleneck = if share(l.moto_cpu_ms) >= 80.0 {
                "moto: one Python process, near a full core (the GIL)".to_owned()
            } else if l.concurrency == 1 {
                "latency: one rotation at a time, each call a round trip to moto".to_owned()
            } else if share(l.moto_cpu_ms + l.rekey_cpu_ms + l.harness_cpu_ms)
                >= 85.0 * self.machine.cores as f64
            {
                format!("the machine's {} cores, shared by all", self.machine.cores)
            } else {
                "moto's request handling (threads waiting on the GIL)".to_owned()
            };
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} | {} | {:.1} / {:.1} | {:.0} | {:.0} | {:.0} | {} | {} |",
                l.concurrency,
                wall / 1000.0,
                l.per_second,
                l.failures,
                l.rekey_cpu_ms as f64 / l.rotations.max(1) as f64,
                l.moto_cpu_ms as f64 / l.rotations.max(1) as f64,
                share(l.moto_cpu_ms),
                share(l.rekey_cpu_ms),
                share(l.harness_cpu_ms),
                mb(l.max_rss_kib as f64 * 1024.0),
                bottleneck,
            );
        }
        let failures: Vec<&String> = f.levels.iter().flat_map(|l| &l.failure_kinds).collect();
        if !failures.is_empty() {
            let _ = writeln!(md, "\nFailures seen: {failures:?}");
        }
        md.push('\n');
    }

    fn model_section(&self, md: &mut String) {
        let (rot_iam, rot_all) = self.path_calls("pipeline");
        let (sweep_iam, _) = self.path_calls("cleanup");
        let lifecycle_iam = rot_iam + RETIRE_IAM;
        let _ = writeln!(
            md,
            "## Model: 100,000 IAM users on AWS with a Step Functions Distributed Map\n\n\
             **Measured here:** a rotation on the pipeline path makes {rot_all} API calls, \
             {rot_iam} of them to IAM. A cleanup sweep with nothing due makes {sweep_iam} IAM \
             calls per secret. rekey's own CPU is tens of milliseconds per rotation at most \
             (above): at fleet scale the cost is API calls, not compute.\n\n\
             **Assumptions:**\n\
             - The old key later costs {RETIRE_IAM} more IAM calls (deactivated once, \
               deleted once by the sweep): {lifecycle_iam} IAM calls per key lifetime.\n\
             - IAM's request rate limit is not published and cannot be raised; throttling \
               answers `Throttling`. The model takes an account budget B of {budgets} IAM \
               requests per second and lets rekey use {share:.0} % of it, leaving the rest \
               to people and other tools. STS (GetCallerIdentity) and Secrets Manager \
               have separate, larger quotas (Secrets Manager publishes 10,000/s for \
               GetSecretValue and DescribeSecret together, and 50/s for PutSecretValue \
               and UpdateSecretVersionStage), so IAM binds first.\n\
             - A rotation takes about {AWS_ROTATION_SECONDS:.0} s on AWS: three key tests \
               1 s apart (2 s), some 18 API round trips (1 s), and waiting for IAM to \
               propagate the new key, which AWS does not bound (about 5 s taken here); \
               rekey's CPU is negligible against it.\n\
             - The Distributed Map reads the secret list from S3 (an export of ListSecrets \
               by tag) in batches, runs each rotation as an Express child workflow \
               (create → test → finish, with the same Retry as the template), and is \
               bounded by MaxConcurrency. Lambda concurrency for each function is at \
               most MaxConcurrency.\n\n\
             | IAM budget B (req/s) | rekey's share (req/s) | rotations/s | all 100,000 due at once | concurrency needed (rotations/s × {AWS_ROTATION_SECONDS:.0} s) | one cleanup sweep |\n\
             |---|---|---|---|---|---|",
            budgets = IAM_BUDGETS.map(|b| b.to_string()).join(", "),
            share = REKEY_SHARE * 100.0,
        );
        for b in IAM_BUDGETS {
            let rate = b * REKEY_SHARE;
            let per_second = rate / rot_iam.max(1) as f64;
            let burst = Duration::from_secs_f64(FLEET_USERS / per_second);
            let sweep = Duration::from_secs_f64(FLEET_USERS * sweep_iam as f64 / rate);
            let _ = writeln!(
                md,
                "| {b} | {rate} | {per_second:.2} | {} | {:.0} | {} |",
                hours(burst),
                (per_second * AWS_ROTATION_SECONDS).ceil(),
                hours(sweep),
            );
        }
        let steady = FLEET_USERS / 90.0 / 86_400.0 * lifecycle_iam as f64;
        let _ = writeln!(
            md,
            "\n**Reading it:**\n\
             - MaxConcurrency should be the \"concurrency needed\" figure, not more: \
               extra concurrency buys only throttling (each throttled call is retried with \
               backoff, which costs more calls). At B = 10 that is a MaxConcurrency near \
               {c10:.0}, far below Distributed Map's 10,000.\n\
             - A fleet enrolled all at once takes the \"all due at once\" time the first \
               time. After that, rotations spread by their own age: with a 90-day period \
               100,000 users need {steady:.3} IAM requests per second on average.\n\
             - A cleanup sweep over every secret costs {sweep_iam} IAM calls each: run \
               daily at 100,000 secrets, it, not rotation, is the standing IAM load. One \
               rekey-cleanup invocation (at most 15 minutes) cannot sweep them all: at this \
               scale the sweep belongs in the Distributed Map too, one `{{\"SecretId\"}}` \
               event per secret, with the same bounded concurrency, or it runs less often \
               (weekly suits the default 24 h / 7 d periods if a superseded key may stay \
               active a few days longer).\n\
             - The template's state machine uses an inline Map over pages of 100 secrets. \
               A Standard execution keeps at most 25,000 history events, which limits one \
               run to a few thousand secrets; 100,000 needs the Distributed Map described \
               here.\n\
             - The hook path costs the same IAM calls; Secrets Manager schedules it per \
               secret, so its rate is set by the spread of the schedules, not by a Map.\n",
            c10 = (10.0 * REKEY_SHARE / rot_iam.max(1) as f64 * AWS_ROTATION_SECONDS).ceil(),
        );
    }
}

fn hours(d: Duration) -> String {
    let h = d.as_secs_f64() / 3600.0;
    if h < 1.0 {
        format!("{:.0} min", h * 60.0)
    } else {
        format!("{h:.1} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_are_nearest_ranks() {
        assert_eq!(median_p90(1..=10), (5, 9));
        assert_eq!(median_p90(1..=20), (10, 18));
        assert_eq!(median_p90([7]), (7, 7));
        assert_eq!(median_p90([]), (0, 0));
        assert_eq!(median_p90([30, 10, 20]), (20, 30));
    }

    #[test]
    fn a_verdict_says_by_how_much_a_target_was_missed() {
        assert_eq!(verdict(20.0, 20.0), "met");
        assert_eq!(verdict(25.0, 20.0), "**missed by 25.0 %**");
    }
}
