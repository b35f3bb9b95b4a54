//! The results of a run: one [`Report`] shape for every scenario, printed for people and
//! written as JSON for scripts (`--json`). Latencies are milliseconds with three decimals.

use crate::error::Error;
use crate::stats::{Percentiles, Second};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Serialize, Default)]
pub struct Correctness {
    /// Receipted (stored) but never delivered by the end of the drain.
    pub lost: u64,
    /// Delivered more than once. Legitimate only after a reconnect (redelivery); scenarios
    /// that tell redeliveries apart (soak) count only the unexplained ones here.
    pub duplicated: u64,
    /// Delivered again in a later session, never having been acknowledged: what the
    /// protocol promises after a reconnect (soak).
    pub redelivered: u64,
    /// Delivered but never receipted (the receipt was lost with a dropped connection).
    pub delivered_unreceipted: u64,
    /// Sends that got neither a receipt nor an error.
    pub unanswered_sends: u64,
    /// Messages from an earlier run found in an inbox (acked and ignored).
    pub stale: u64,
    /// Connections that dropped and were re-established during the run.
    pub reconnects: u64,
    /// Delivered to an inbox other than the one addressed, or from the wrong sender.
    pub misrouted: u64,
    pub ok: bool,
}

impl Correctness {
    pub fn judge(&mut self) {
        self.ok = self.lost == 0 && self.misrouted == 0 && (self.duplicated == 0 || self.reconnects > 0);
    }

    /// For scenarios that count redeliveries apart: any other duplicate is a failure.
    pub fn judge_strict(&mut self) {
        self.ok = self.lost == 0 && self.misrouted == 0 && self.duplicated == 0;
    }
}

#[derive(Serialize, Default)]
pub struct Cpu {
    /// Over the measured window; 100 = one full core (the machine has `nproc` cores).
    pub loadgen_percent: Option<f64>,
    pub server_percent: Option<f64>,
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub server: String,
    pub run_id: u32,
    pub params: serde_json::Value,
    /// Whole-run totals (warm-up and drain included): the correctness accounting.
    pub sent: u64,
    pub receipted: u64,
    pub delivered: u64,
    /// Length of the measured window the rates below are over.
    pub measured_seconds: f64,
    pub sent_per_sec: f64,
    pub receipted_per_sec: f64,
    pub delivered_per_sec: f64,
    /// By name: delivery, receipt (send-to-delivery, send-to-receipt), or the scenario's own.
    pub latency_ms: BTreeMap<String, Percentiles>,
    pub errors: BTreeMap<String, u64>,
    pub correctness: Correctness,
    pub cpu: Cpu,
    /// Scenario-specific figures.
    pub details: serde_json::Value,
    pub per_second: Vec<Second>,
    /// Phase names and start times (ns), for the plot; not part of the JSON.
    #[serde(skip)]
    pub phases: Vec<(&'static str, f64)>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Write { path: path.into(), source: e.into() })?;
        std::fs::write(path, json).map_err(|source| Error::Write { path: path.into(), source })
    }

    /// The human summary, for stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "confab-loadgen {} against {}", self.scenario, self.server);
        let _ = writeln!(out, "  params: {}", self.params);
        if self.sent + self.delivered > 0 {
            let _ = writeln!(
                out,
                "  messages: {} sent, {} receipted, {} delivered (whole run)",
                self.sent, self.receipted, self.delivered
            );
            let _ = writeln!(
                out,
                "  measured {:.3} s: {:.0} sent/s, {:.0} receipted/s, {:.0} delivered/s",
                self.measured_seconds, self.sent_per_sec, self.receipted_per_sec, self.delivered_per_sec
            );
        }
        for (name, p) in &self.latency_ms {
            let _ = writeln!(
                out,
                "  {name:<16} ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
                p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
            );
        }
        if let serde_json::Value::Object(details) = &self.details {
            for (key, value) in details {
                let _ = writeln!(out, "  {key}: {value}");
            }
        }
        let c = &self.correctness;
        let _ = writeln!(
            out,
            "  correctness: lost {}, duplicated {}, redelivered {}, misrouted {}, unanswered sends {}, \
             delivered-unreceipted {}, stale {}, reconnects {} => {}",
            c.lost,
            c.duplicated,
            c.redelivered,
            c.misrouted,
            c.unanswered_sends,
            c.delivered_unreceipted,
            c.stale,
            c.reconnects,
            if c.ok { "OK" } else { "FAILED" }
        );
        let pct = |p: Option<f64>| p.map_or("n/a".to_string(), |p| format!("{p:.0}%"));
        let _ = writeln!(
            out,
            "  cpu (100% = one core): loadgen {}, server {}",
            pct(self.cpu.loadgen_percent),
            pct(self.cpu.server_percent)
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            let _ = writeln!(out, "  errors:");
            for (kind, n) in &self.errors {
                let _ = writeln!(out, "    {kind}: {n}");
            }
        }
        out
    }
}

/// Events per second, 0 for an empty window.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (count as f64 / seconds * 10.0).round() / 10.0
    } else {
        0.0
    }
}
