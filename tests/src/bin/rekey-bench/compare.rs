//! Before and after: this run's figures beside another build's, measured
//! in the same run (`--baseline`: the two builds take turns at the cold
//! starts), each with the tolerance a change must keep: timings may grow
//! by at most 10 % or 1 ms, peak memory by at most 0.5 MB, API calls not
//! at all.

use std::fmt::Write as _;

use serde_json::Value;

use crate::{FUNCTIONS, HOOK_STEPS};

/// What a figure measures, and so how much it may grow.
#[derive(Clone, Copy)]
enum Kind {
    /// Microseconds: 10 % or 1 ms, whichever is more.
    Time,
    /// KiB of peak memory: 0.5 MB.
    Memory,
    /// API calls: none.
    Calls,
}

/// Nearest-rank median (the report's rule).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len().div_ceil(2) - 1])
}

fn numbers(v: &Value, field: &str) -> Vec<f64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| match field {
            "" => s.as_f64(),
            f => s[f].as_f64(),
        })
        .collect()
}

/// Every compared figure of a report's JSON: `(name, kind, value)`.
fn figures(report: &Value) -> Vec<(String, Kind, Option<f64>)> {
    let cold = &report["cold"];
    let mut out = Vec::new();
    let mut samples = |name: String, samples: &Value| {
        let max = |f: &str| numbers(samples, f).into_iter().reduce(f64::max);
        out.push((
            format!("{name}: init, median"),
            Kind::Time,
            median(numbers(samples, "init_us")),
        ));
        out.push((
            format!("{name}: cold invocation, median"),
            Kind::Time,
            median(numbers(samples, "first_answer_us")),
        ));
        out.push((
            format!("{name}: CPU, median"),
            Kind::Time,
            median(numbers(samples, "cpu_us")),
        ));
        out.push((
            format!("{name}: peak RSS, max"),
            Kind::Memory,
            max("peak_rss_kib"),
        ));
    };
    for f in FUNCTIONS {
        samples(format!("rekey-{f}"), &cold["samples"][f]);
    }
    let providers: Vec<String> = cold["providers"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for p in &providers {
        samples(format!("rekey-hook, {p}"), &cold["providers"][p]["samples"]);
    }
    let mut warm = |name: String, steps: &Value| {
        for step in HOOK_STEPS {
            out.push((
                format!("{name}: warm {step}, median"),
                Kind::Time,
                median(numbers(&steps[step], "")),
            ));
        }
    };
    warm("rekey-hook".into(), &cold["warm_hook_us"]);
    for p in &providers {
        warm(format!("rekey-hook, {p}"), &cold["providers"][p]["warm_us"]);
    }
    for s in report["calls"].as_array().into_iter().flatten() {
        let n: f64 = s["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c[2].as_f64())
            .sum();
        out.push((
            format!(
                "calls: {} path, {}",
                s["path"].as_str().unwrap_or("?"),
                s["step"].as_str().unwrap_or("?")
            ),
            Kind::Calls,
            Some(n),
        ));
    }
    for p in &providers {
        for (call, n) in cold["providers"][p]["calls"]
            .as_object()
            .into_iter()
            .flatten()
        {
            out.push((
                format!("calls: rekey-hook, {p}, {call}"),
                Kind::Calls,
                n.as_f64(),
            ));
        }
    }
    out
}

fn shown(kind: Kind, v: Option<f64>) -> String {
    match (kind, v) {
        (_, None) => "n/a".into(),
        (Kind::Time, Some(us)) => format!("{:.1} ms", us / 1000.0),
        (Kind::Memory, Some(kib)) => format!("{:.1} MB", kib * 1024.0 / 1e6),
        (Kind::Calls, Some(n)) => format!("{n}"),
    }
}

/// Whether `after` keeps to `before`'s tolerance.
fn within(kind: Kind, before: f64, after: f64) -> bool {
    match kind {
        Kind::Time => after <= (before * 1.10).max(before + 1000.0),
        Kind::Memory => (after - before) * 1024.0 <= 500_000.0,
        Kind::Calls => after == before,
    }
}

/// The section: `baseline` (its label and JSON) beside `current`.
pub fn section(md: &mut String, label: &str, baseline: &Value, current: &Value) {
    let _ = writeln!(
        md,
        "## Before and after\n\n\
         This build (after) beside {label} (before), measured in this run: the two \
         builds took turns at the cold starts and warm steps, a fifth of the runs \
         at a time, so that the machine's drift weighs on both alike; their calls \
         were counted the same way. A timing may grow by at most 10 % or 1 ms, peak \
         memory by at most 0.5 MB, API calls not at all.\n\n\
         | figure | before | after | within |\n|---|---|---|---|"
    );
    let before = figures(baseline);
    let mut kept = (0, 0);
    for (name, kind, after) in figures(current) {
        let was = before
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, _, v)| *v);
        let verdict = match (was, after) {
            (Some(b), Some(a)) if within(kind, b, a) => {
                kept.0 += 1;
                "yes".to_owned()
            }
            (Some(_), Some(_)) => "**no**".to_owned(),
            _ => "new".to_owned(),
        };
        kept.1 += usize::from(verdict != "new");
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {verdict} |",
            shown(kind, was),
            shown(kind, after)
        );
    }
    let _ = writeln!(
        md,
        "\n{} of {} figures measured before are within their tolerance.\n",
        kept.0, kept.1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_are_ten_percent_or_a_millisecond_half_a_megabyte_and_no_call() {
        assert!(within(Kind::Time, 5_000.0, 6_000.0), "1 ms more");
        assert!(!within(Kind::Time, 5_000.0, 6_001.0));
        assert!(within(Kind::Time, 50_000.0, 55_000.0), "10 % more");
        assert!(!within(Kind::Time, 50_000.0, 55_001.0));
        assert!(within(Kind::Memory, 10_000.0, 10_488.0));
        assert!(!within(Kind::Memory, 10_000.0, 10_489.0));
        assert!(within(Kind::Calls, 3.0, 3.0) && !within(Kind::Calls, 3.0, 4.0));
        assert_eq!(median(vec![3.0, 1.0, 2.0, 4.0]), Some(2.0));
    }
}
