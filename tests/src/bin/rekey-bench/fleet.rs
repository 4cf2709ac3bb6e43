//! A fleet of managed secrets rotated through rekey-create, rekey-test and
//! rekey-finish, as the state machine's Map does it: `c` rotations at a
//! time, each function served by `c` execution environments.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rekey::model::Credential;
use rekey_testkit::runtime::{own_cpu_time, Function};
use rekey_testkit::{moto, MANAGED_PATH};
use serde::Serialize;

use crate::{call, events, Setup};

/// One fleet run.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    pub concurrency: usize,
    pub rotations: usize,
    pub failures: usize,
    /// What failed, by error (type and message).
    pub failure_kinds: Vec<String>,
    pub wall_ms: u64,
    pub per_second: f64,
    /// CPU time of all function processes (user + system).
    pub rekey_cpu_ms: u64,
    /// CPU time of moto_server's process.
    pub moto_cpu_ms: u64,
    /// CPU time of the bench itself (Runtime API servers, driver).
    pub harness_cpu_ms: u64,
    /// The largest peak RSS of any function process.
    pub max_rss_kib: u64,
    /// Rotations checked afterwards (keys and AWSCURRENT authenticating).
    pub checked: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fleet {
    pub secrets: usize,
    /// Time to create the users, keys and secrets (all levels).
    pub setup_ms: u64,
    pub levels: Vec<Level>,
}

type Enrolled = (String, Credential, String);

/// Creates `count` managed secrets, `parallel` at a time.
pub async fn enroll(setup: &Setup, count: usize, parallel: usize) -> Vec<Enrolled> {
    let made = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        let (w, made) = (setup.world.clone(), made.clone());
        let share = count / parallel + usize::from(worker < count % parallel);
        tasks.spawn(async move {
            for _ in 0..share {
                let e = w.enrolled(MANAGED_PATH).await;
                made.lock().unwrap().push(e);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("enrolling secrets");
    }
    let made = std::mem::take(&mut *made.lock().unwrap());
    made
}

/// CPU time (user + system) of process `pid`, from `/proc` (clock ticks).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// rekey-test's KeyNotReady means wait and test again, as the state
/// machine's Retry does (with longer, growing pauses); moto's keys are ready
/// at once, so this should not happen.
const TEST_ATTEMPTS: usize = 6;

async fn rotate(
    create: &mut Function,
    test: &mut Function,
    finish: &mut Function,
    secret: &str,
) -> Result<(), String> {
    let created = call(create, events::create(secret)).await?;
    let next = events::next(&created);
    let mut attempt = 1;
    while let Err(e) = call(test, next.clone()).await {
        if !e.contains("KeyNotReady") || attempt == TEST_ATTEMPTS {
            return Err(e);
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    call(finish, next).await.map(drop)
}

#[derive(Default)]
struct Worker {
    rotations: usize,
    /// `(secret, error)`.
    failures: Vec<(String, String)>,
    cpu: Duration,
    max_rss_kib: u64,
}

async fn worker(setup: Arc<Setup>, queue: Arc<Mutex<Vec<Enrolled>>>) -> Worker {
    let mut create = setup.start("create", &setup.env).await;
    let mut test = setup.start("test", &setup.env).await;
    let mut finish = setup.start("finish", &setup.env).await;
    let mut w = Worker::default();
    loop {
        let Some((_, _, secret)) = queue.lock().unwrap().pop() else {
            break;
        };
        match rotate(&mut create, &mut test, &mut finish, &secret).await {
            Ok(()) => w.rotations += 1,
            Err(e) => w.failures.push((secret, e)),
        }
    }
    for f in [create, test, finish] {
        let (_, usage) = f.stop().await;
        w.cpu += usage.user + usage.sys;
        w.max_rss_kib = w.max_rss_kib.max(usage.peak_rss_kib.unwrap_or(0));
    }
    w
}

pub async fn run(setup: &Setup, secrets: usize, levels: &[usize]) -> Fleet {
    let started = Instant::now();
    let mut all = enroll(setup, secrets * levels.len(), 16).await;
    let setup_ms = started.elapsed().as_millis() as u64;
    eprintln!(
        "  {} secrets enrolled in {:.1} s",
        all.len(),
        setup_ms as f64 / 1000.0
    );
    let shared = Arc::new(setup.clone());
    let moto_pid = moto().pid();
    let mut out = Vec::new();
    for &c in levels {
        let batch: Vec<Enrolled> = all.split_off(all.len() - secrets);
        let queue = Arc::new(Mutex::new(batch.clone()));
        let (moto0, own0) = (process_cpu(moto_pid), own_cpu_time());
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..c {
            workers.spawn(worker(shared.clone(), queue.clone()));
        }
        let mut total = Worker::default();
        while let Some(w) = workers.join_next().await {
            let w = w.expect("a fleet worker");
            total.rotations += w.rotations;
            total.failures.extend(w.failures);
            total.cpu += w.cpu;
            total.max_rss_kib = total.max_rss_kib.max(w.max_rss_kib);
        }
        let wall = started.elapsed();
        let (moto_cpu, own) = (process_cpu(moto_pid) - moto0, own_cpu_time() - own0);

        // Every rotation took place: check a spread of them at the source.
        let step = (batch.len() / 20).max(1);
        let mut checked = 0;
        let failed: Vec<&String> = total.failures.iter().map(|(s, _)| s).collect();
        for (user, old, secret) in batch.iter().step_by(step) {
            if failed.contains(&secret) {
                continue;
            }
            setup.world.assert_invariants(secret, user).await;
            let now = setup.world.current_credential(secret).await;
            assert_ne!(
                now.map(|c| c.access_key_id),
                Some(old.access_key_id.clone()),
                "{secret} was not rotated"
            );
            checked += 1;
        }
        let mut kinds: Vec<String> = total.failures.iter().map(|(_, e)| e.clone()).collect();
        kinds.sort();
        kinds.dedup();
        let level = Level {
            concurrency: c,
            rotations: total.rotations,
            failures: total.failures.len(),
            failure_kinds: kinds,
            wall_ms: wall.as_millis() as u64,
            per_second: total.rotations as f64 / wall.as_secs_f64(),
            rekey_cpu_ms: total.cpu.as_millis() as u64,
            moto_cpu_ms: moto_cpu.as_millis() as u64,
            harness_cpu_ms: own.as_millis() as u64,
            max_rss_kib: total.max_rss_kib,
            checked,
        };
        eprintln!(
            "  concurrency {c}: {} rotations in {:.1} s ({:.1}/s), {} failed",
            level.rotations,
            wall.as_secs_f64(),
            level.per_second,
            level.failures
        );
        out.push(level);
    }
    Fleet {
        secrets,
        setup_ms,
        levels: out,
    }
}
