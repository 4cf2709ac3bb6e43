//! The machine, the artifacts, and the report: a table for people
//! (`.md`) and the raw figures (`.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::calls::StepCalls;
use crate::cold::{Cold, Sample};
use crate::fleet::Fleet;
use crate::sweep::Sweeps;
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
        drop(rekey::sdk::new_connector());
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
    pub sweeps: Sweeps,
    /// The fleet through the Distributed Map (`tests/statemachine/fleet.py`),
    /// when `scripts/bench` ran it.
    pub map_fleet: Option<MapFleet>,
    /// Another build's report to compare with (`--baseline`): its label
    /// and JSON.
    #[serde(skip)]
    pub baseline: Option<(String, serde_json::Value)>,
}

/// What `tests/statemachine/fleet.py` writes: the state machine run in
/// moto over a fleet, once with every secret due, once with nothing due.
#[derive(Serialize, Deserialize)]
pub struct MapFleet {
    pub secrets: usize,
    pub accounts: usize,
    pub max_concurrency: usize,
    /// How cargo lambda watch built the functions: `release` or `debug`.
    pub build: String,
    pub child_execution_type: String,
    pub signatures_checked: bool,
    pub due_run: MapRun,
    pub quiet_run: MapRun,
}

/// One execution of the state machine.
#[derive(Serialize, Deserialize)]
pub struct MapRun {
    pub status: String,
    pub wall_s: f64,
    /// Events in the parent execution's history.
    pub history_events: usize,
    pub map_runs: usize,
    /// Child executions (the map runs' items).
    pub children: usize,
    pub children_failed: usize,
    /// Messages the alert topic delivered.
    pub alerts: usize,
    /// Secrets found rotated and right at the source (the due run).
    #[serde(default)]
    pub rotated: Option<usize>,
    /// Secrets not rotated or wrong at the source (the due run).
    #[serde(default)]
    pub failed: Option<usize>,
    /// CPU seconds during the run: moto, the functions, the harness.
    pub cpu_s: BTreeMap<String, f64>,
    /// Invocations the harness's router sent again after cargo lambda
    /// watch left them unanswered for 30 s.
    #[serde(default)]
    pub invocations_resent: usize,
}

/// Reads `fleet.py`'s figures, if it ran (`None` otherwise).
pub fn map_fleet(path: &Path) -> Option<MapFleet> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
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
/// REKEY_FULL_CHECK_EVERY's default, in days.
const FULL_CHECK_DAYS: f64 = 7.0;

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
             builds, and rekey's calls to Alibaba and SCloud share) takes {} ms the first \
             time and {} ms after that; it is built once per process, on first use. The first read \
             of the kernel's entropy source (`getrandom`, which seeds hash maps, TLS and \
             request signing) took {} µs: it did not block (it blocks only until the \
             kernel's pool is first initialised, early in boot).\n",
            ms(t.first_client_us),
            ms(t.client_median_us),
            t.first_getrandom_us,
        );

        self.providers_section(&mut md);
        if let Some((label, baseline)) = &self.baseline {
            let current = serde_json::to_value(self).expect("the report serialises");
            crate::compare::section(&mut md, label, baseline, &current);
        }

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
                "rekey-cleanup, one secret, full check (what the sweep sends on when something is due, and every REKEY_FULL_CHECK_EVERY)",
            ),
            (
                "sweep",
                "Sweep, one page with nothing due (rekey-cleanup's triage, for the state machine)",
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
        self.sweep_section(&mut md);
        self.map_fleet_section(&mut md);
        self.model_section(&mut md);

        let _ = writeln!(md, "## Settings of the measured functions\n");
        for (k, v) in &self.config {
            let _ = writeln!(md, "- `{k}={v}`");
        }
        md
    }

    fn providers_section(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Alibaba and SCloud\n\n\
             rekey-hook rotating a secret signed by an admin key (`AdminSecretId`) against \
             the provider's emulator on 127.0.0.1 (every signature checked with the \
             official SDK), Secrets Manager on moto: each cold process carries out a whole \
             rotation; the warm steps are the rotations after the first in one process. Median / p90 \
             (ms); the emulators' own time is in every figure.\n\n\
             | provider | runs | init | cold invocation | CPU, whole rotation (median) | peak RSS max (MB) | warm createSecret | warm setSecret | warm testSecret | warm finishSecret |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for (name, p) in &self.cold.providers {
            let s = &p.samples;
            let (init, init90) = median_p90(s.iter().map(|s| s.init_us));
            let (first, first90) = median_p90(s.iter().map(|s| s.first_answer_us));
            let (cpu, _) = median_p90(s.iter().map(|s| s.cpu_us));
            let rss = s.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
            let warm: Vec<String> = crate::HOOK_STEPS
                .iter()
                .map(|step| {
                    let (w, w90) = median_p90(p.warm_us.get(step).into_iter().flatten().copied());
                    format!("{} / {}", ms(w), ms(w90))
                })
                .collect();
            let _ = writeln!(
                md,
                "| {name} | {} | {} / {} | {} / {} | {} | {} | {} |",
                s.len(),
                ms(init),
                ms(init90),
                ms(first),
                ms(first90),
                ms(cpu),
                mb(rss as f64 * 1024.0),
                warm.join(" | "),
            );
        }
        for (name, p) in &self.cold.providers {
            let calls: Vec<String> = p.calls.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let total: usize = p.calls.values().sum();
            let _ = writeln!(
                md,
                "\nCalls of one {name} rotation ({total}): {}.",
                calls.join(", ")
            );
        }
        md.push('\n');
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

    fn sweep_section(&self, md: &mut String) {
        let w = &self.sweeps;
        let _ = writeln!(
            md,
            "## Sweeps over every secret\n\n\
             Every managed secret in moto ({} of them: {} enrolled for this, the rest left by \
             the runs above; before the fleet runs) swept twice through rekey-cleanup, \
             counted by the proxy: first each checked in full \
             (`{{}}`, run again until it reaches every secret: each invocation stops \
             starting secrets near its deadline, {} s in the bench), as the daily sweep \
             did for every secret before the sweep decided from ListSecrets; then the \
             state machine's triage with nothing due (`{{\"Triage\"}}`, 5 pages of 100 per \
             call, following `Next`).\n\n\
             | sweep | secrets | invocations | sent on | API calls per secret | IAM calls per secret | wall (s) |\n\
             |---|---|---|---|---|---|---|",
            w.nothing_due.secrets,
            crate::sweep::SECRETS,
            crate::DEADLINE.as_secs(),
        );
        for (name, c) in [
            (
                "every secret checked in full (before: every daily sweep)",
                &w.full_check,
            ),
            (
                "nothing due: triage from ListSecrets (after)",
                &w.nothing_due,
            ),
        ] {
            let (all, iam) = c.per_secret();
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {all:.3} | {iam:.3} | {:.1} |",
                c.secrets, c.invocations, c.due, c.wall_s
            );
        }
        let _ = writeln!(
            md,
            "\n\"Sent on\": secrets the triage still found due (rotations the cold-start runs \
             left in progress are looked at by every sweep until they finish or are \
             abandoned); their full checks are not in the triage's calls.\n"
        );
    }

    fn map_fleet_section(&self, md: &mut String) {
        let _ = writeln!(md, "## Fleet through the Distributed Map\n");
        let Some(f) = &self.map_fleet else {
            let _ = writeln!(
                md,
                "Not run this time: `scripts/bench` runs it (`tests/statemachine/fleet.py`, \
                 figures in `target/bench-map-fleet.json`).\n"
            );
            return;
        };
        let _ = writeln!(
            md,
            "The scheduled state machine (`infra/statemachine/rotation.asl.json`) executed by \
             moto's Step Functions interpreter, its Lambda tasks reaching the real function \
             binaries ({build} build) under `cargo lambda watch` \
             (`tests/statemachine/fleet.py`, the harness of `tests/statemachine/test_rotation.py`). \
             {secrets} secrets, one user each under the managed path, spread over {accounts} \
             accounts (the central one and two members, reached through the member role), all \
             due (RotationPeriod 1 s); MaxConcurrency {conc}. Run 1 (`{{}}`) rotates them all; \
             every secret is then checked at the source (a new AWSCURRENT key, active in its \
             account, at most two keys, no AWSPENDING left), and a wrong one counts as failed. \
             Run 2, right after (`{{\"RotationPeriod\": \"90d\"}}`), has nothing due. \
             Differences from AWS: the children are {child} here (EXPRESS as deployed: moto runs \
             only Standard children), moto checks no signatures in this run (its interpreter \
             signs its own calls with fixed test keys), and the harness's router sends an \
             invocation again when `cargo lambda watch` leaves it unanswered for 30 s \
             (the steps are idempotent by token; each such wait is in the wall time).\n\n\
             | run | status | wall (s) | secrets/s | map runs | children | children failed | rotated | failed | alerts | parent history events | invocations resent | CPU: moto / functions / harness (s) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|",
            build = f.build,
            secrets = f.secrets,
            accounts = f.accounts,
            conc = f.max_concurrency,
            child = f.child_execution_type,
        );
        for (name, r) in [
            ("1: every secret due", &f.due_run),
            ("2: nothing due", &f.quiet_run),
        ] {
            let cpu = |k: &str| r.cpu_s.get(k).copied().unwrap_or(0.0);
            let opt = |v: Option<usize>| v.map_or("–".to_owned(), |v| v.to_string());
            let _ = writeln!(
                md,
                "| {name} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} |",
                r.status,
                r.wall_s,
                f.secrets as f64 / r.wall_s.max(0.001),
                r.map_runs,
                r.children,
                r.children_failed,
                opt(r.rotated),
                opt(r.failed),
                r.alerts,
                r.history_events,
                r.invocations_resent,
                cpu("moto"),
                cpu("functions"),
                cpu("harness"),
            );
        }
        let due = &f.due_run;
        let moto_share = due.cpu_s.get("moto").copied().unwrap_or(0.0) / due.wall_s.max(0.001);
        let _ = writeln!(
            md,
            "\n**What bounds it:** moto, one Python process running both the interpreter \
             and every API request the functions make (its threads share the GIL): during \
             run 1 it used {:.0} % of a core, against {:.1} s of CPU for all the functions \
             together. On AWS the bound is IAM's request rate (the model below), not \
             the state machine. Secrets/s for run 2 is how fast a quiet day is swept: \
             triage from ListSecrets, no child. The parent's history holds {} events for \
             {} triage calls and their map runs (the children's events are their own).\n",
            moto_share * 100.0,
            due.cpu_s.get("functions").copied().unwrap_or(0.0),
            due.history_events,
            due.map_runs,
        );
    }

    fn model_section(&self, md: &mut String) {
        let (rot_iam, rot_all) = self.path_calls("pipeline");
        let (check_iam, check_all) = self.path_calls("cleanup");
        let (quiet_all, quiet_iam) = self.sweeps.nothing_due.per_secret();
        let lifecycle_iam = rot_iam + RETIRE_IAM;
        // A full check every FULL_CHECK_DAYS at most, spread between half
        // of that and all of it: three quarters of it on average.
        let check_every_days = FULL_CHECK_DAYS * 0.75;
        let checks_per_day = FLEET_USERS / check_every_days;
        let daily_iam_before = FLEET_USERS * check_iam as f64;
        // One ListSecrets per page of 100 (the measured rate includes the
        // last, partial page of a small fleet).
        let pages = (FLEET_USERS / 100.0).ceil();
        let daily_iam_after = checks_per_day * check_iam as f64 + FLEET_USERS * quiet_iam;
        let daily_all_after = checks_per_day * check_all as f64 + pages;
        let _ = writeln!(
            md,
            "## Model: 100,000 IAM users on AWS with a Step Functions Distributed Map\n\n\
             **Measured here:** a rotation on the pipeline path makes {rot_all} API calls, \
             {rot_iam} of them to IAM. A full check of one secret makes {check_all} calls, \
             {check_iam} of them IAM. A sweep with nothing due makes {quiet_all:.3} API \
             calls per secret, {quiet_iam:.3} of them IAM (one ListSecrets per 100). rekey's \
             own CPU is tens of milliseconds per rotation at most (above): at fleet scale \
             the cost is API calls, not compute.\n\n\
             **Assumptions:**\n\
             - The old key later costs {RETIRE_IAM} more IAM calls (deactivated once, \
               deleted once by a full check the sweep sends it to): {lifecycle_iam} IAM \
               calls per key lifetime, besides the full checks.\n\
             - The sweep runs daily and checks each secret in full every \
               REKEY_FULL_CHECK_EVERY ({FULL_CHECK_DAYS:.0} days by default) at most, each \
               secret between half of that and all of it: every {check_every_days:.2} days \
               on average.\n\
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
             - The template's Distributed Map runs one Express child per due secret \
               (its full check, then create → test → finish where due), bounded by \
               MaxConcurrency; rekey-cleanup's triage feeds it 500 secrets per call. Lambda \
               concurrency for each function is at most MaxConcurrency.\n\n\
             | IAM budget B (req/s) | rekey's share (req/s) | rotations/s | all 100,000 due at once | concurrency needed (rotations/s × {AWS_ROTATION_SECONDS:.0} s) | one day's full checks ({checks:.0}) |\n\
             |---|---|---|---|---|---|",
            budgets = IAM_BUDGETS.map(|b| b.to_string()).join(", "),
            share = REKEY_SHARE * 100.0,
            checks = checks_per_day,
        );
        for b in IAM_BUDGETS {
            let rate = b * REKEY_SHARE;
            let per_second = rate / rot_iam.max(1) as f64;
            let burst = Duration::from_secs_f64(FLEET_USERS / per_second);
            let checks = Duration::from_secs_f64(checks_per_day * check_iam as f64 / rate);
            let _ = writeln!(
                md,
                "| {b} | {rate} | {per_second:.2} | {} | {:.0} | {} |",
                hours(burst),
                (per_second * AWS_ROTATION_SECONDS).ceil(),
                hours(checks),
            );
        }
        let steady = FLEET_USERS / 90.0 / 86_400.0 * lifecycle_iam as f64;
        let _ = writeln!(
            md,
            "\n**Reading it:**\n\
             - The standing IAM load of the daily sweep at 100,000 secrets: before, every \
               secret was checked in full every day, {daily_iam_before:.0} IAM calls a day \
               ({:.2}/s); now {daily_iam_after:.0} IAM calls a day ({:.2}/s), all of them the \
               full checks, and {daily_all_after:.0} API calls in all. A day on which no \
               check falls due costs {:.0} ListSecrets calls and no IAM call.\n\
             - MaxConcurrency should be the \"concurrency needed\" figure, not more: \
               extra concurrency buys only throttling (each throttled call is retried with \
               backoff, which costs more calls). At B = 10 that is a MaxConcurrency near \
               {c10:.0}, far below Distributed Map's 10,000.\n\
             - A fleet enrolled all at once takes the \"all due at once\" time the first \
               time. After that, rotations spread by their own age: with a 90-day period \
               100,000 users need {steady:.3} IAM requests per second on average.\n\
             - Step Functions' limits: a Standard execution keeps at most 25,000 history \
               events; the parent loops once per triage call (500 secrets), about 18 events \
               each (the fleet through the map above measures them), so 100,000 secrets \
               take some 3,600 events. Each answer is at most 500 \
               items of about 150 bytes, far below the 256 KB payload limit. The children's \
               events are their own.\n\
             - The hook path costs the same IAM calls; Secrets Manager schedules it per \
               secret, so its rate is set by the spread of the schedules, not by a Map.\n",
            daily_iam_before / 86_400.0,
            daily_iam_after / 86_400.0,
            pages,
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
