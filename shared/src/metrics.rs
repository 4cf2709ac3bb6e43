//! Metrics in CloudWatch embedded metric format: one JSON line on stdout per
//! event, which CloudWatch Logs turns into metrics in the `rekey` namespace.
//! Only counts, ages, ids and reasons go in: never secret material.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "rekey";

/// One EMF record: metrics that share the `Function` dimension (plus any
/// extra dimensions).
#[derive(Debug, Clone)]
pub struct Record {
    function: &'static str,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, f64, &'static str)>,
    properties: Vec<(&'static str, String)>,
}

impl Record {
    pub fn new(function: &'static str) -> Self {
        Record {
            function,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Vec::new(),
        }
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn count(mut self, name: &'static str, n: usize) -> Self {
        if n > 0 {
            self.metrics.push((name, n as f64, "Count"));
        }
        self
    }

    /// A plain number (CloudWatch unit `None`), e.g. an age in days.
    pub fn value(mut self, name: &'static str, value: f64) -> Self {
        self.metrics.push((name, value, "None"));
        self
    }

    /// A searchable field that is not a dimension (e.g. the SecretId).
    pub fn property(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The EMF JSON line, or `None` when there is nothing to report.
    pub fn to_line(&self, now: SystemTime) -> Option<String> {
        if self.metrics.is_empty() {
            return None;
        }
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Each metric by Function alone, and by Function and the extra
        // dimensions when there are any (alarms use the first).
        let mut dims = vec![vec!["Function"]];
        if !self.dimensions.is_empty() {
            let mut all = vec!["Function"];
            all.extend(self.dimensions.iter().map(|(k, _)| *k));
            dims.push(all);
        }
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": millis as u64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dims,
                    "Metrics": self.metrics.iter()
                        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("Function".into(), self.function.into());
        for (k, v) in self.dimensions.iter().chain(&self.properties) {
            root.insert((*k).into(), v.clone().into());
        }
        for (name, value, _) in &self.metrics {
            root.insert((*name).into(), json!(value));
        }
        Some(Value::Object(root).to_string())
    }

    /// Writes the record to stdout, where Lambda sends it to CloudWatch.
    pub fn emit(self) {
        if let Some(line) = self.to_line(SystemTime::now()) {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn emf_line_declares_its_metrics_and_dimensions() {
        let line = Record::new("cleanup")
            .dimension("Reason", "paused")
            .count("SecretsSkipped", 2)
            .count("KeysDeleted", 0)
            .value("CurrentVersionAgeDays", 1.5)
            .property("SecretId", "arn:x")
            .to_line(UNIX_EPOCH + Duration::from_millis(1234))
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1234);
        assert_eq!(cw["Namespace"], "rekey");
        assert_eq!(
            cw["Dimensions"],
            json!([["Function"], ["Function", "Reason"]])
        );
        assert_eq!(
            cw["Metrics"],
            json!([{"Name": "SecretsSkipped", "Unit": "Count"}, {"Name": "CurrentVersionAgeDays", "Unit": "None"}])
        );
        assert_eq!(v["Function"], "cleanup");
        assert_eq!(v["Reason"], "paused");
        assert_eq!(v["SecretsSkipped"], 2.0);
        assert_eq!(v["SecretId"], "arn:x");
        assert!(v.get("KeysDeleted").is_none(), "zero counts are left out");
    }

    #[test]
    fn nothing_to_report_is_no_line() {
        assert!(Record::new("create")
            .count("KeysCreated", 0)
            .to_line(SystemTime::now())
            .is_none());
    }
}
