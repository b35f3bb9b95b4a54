//! Readings from /proc: a process's resident memory and CPU time, and our open-file limit.
//! The load generator shares the machine with the server, so every run reports who used
//! how much CPU: a run where the load generator sat at 100% measured the load generator.

use crate::stats::CpuSecond;
use serde::Serialize;

/// USER_HZ: /proc reports CPU time in these ticks; 100 on every Linux ABI in use.
const TICKS_PER_SEC: f64 = 100.0;

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// User plus system CPU ticks of a process ("self" for this one).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The soft and hard limits on open files of this process.
pub fn fd_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers =
        line.split_whitespace().filter_map(|w| w.parse::<u64>().ok().or((w == "unlimited").then_some(u64::MAX)));
    Some((numbers.next()?, numbers.next()?))
}

/// Server memory over a run, from /proc/PID/status (VmRSS).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RssSummary {
    pub first_kib: u64,
    pub min_kib: u64,
    pub max_kib: u64,
    pub last_kib: u64,
    pub samples: usize,
}

#[derive(Clone, Copy)]
struct Sample {
    t_ns: u64,
    own: Option<u64>,
    server: Option<u64>,
    rss: Option<u64>,
}

/// Samples CPU time (ours and the server's) and the server's RSS once a second from a
/// given origin, plus at marks the scenario chooses (the measured window's edges).
pub struct Monitor {
    server_pid: Option<u32>,
    origin: u64,
    next_due: u64,
    seconds: Vec<Sample>,
    marks: Vec<Sample>,
}

impl Monitor {
    pub fn new(server_pid: Option<u32>) -> Self {
        Monitor { server_pid, origin: 0, next_due: u64::MAX, seconds: Vec::new(), marks: Vec::new() }
    }

    fn read(&self, t_ns: u64) -> Sample {
        Sample {
            t_ns,
            own: cpu_ticks("self"),
            server: self.server_pid.and_then(|pid| cpu_ticks(&pid.to_string())),
            rss: self.server_pid.and_then(rss_kib),
        }
    }

    /// Starts the once-a-second samples at `origin` (taking the first now).
    pub fn start(&mut self, origin: u64) {
        self.origin = origin;
        self.seconds = vec![self.read(origin)];
        self.next_due = origin + 1_000_000_000;
    }

    /// Takes the per-second sample if one is due; cheap otherwise.
    pub fn tick(&mut self, now: u64) {
        while now >= self.next_due {
            let sample = self.read(now);
            self.seconds.push(sample);
            self.next_due += 1_000_000_000;
        }
    }

    /// Takes a sample now, for [`Monitor::cpu_between_marks`].
    pub fn mark(&mut self, now: u64) {
        let sample = self.read(now);
        self.marks.push(sample);
    }

    /// CPU% of (load generator, server) between the first and last mark.
    pub fn cpu_between_marks(&self) -> (Option<f64>, Option<f64>) {
        self.cpu_between(0, self.marks.len().saturating_sub(1))
    }

    /// CPU% of (load generator, server) between marks `a` and `b` (in order taken).
    pub fn cpu_between(&self, a: usize, b: usize) -> (Option<f64>, Option<f64>) {
        match (self.marks.get(a), self.marks.get(b)) {
            (Some(a), Some(b)) if b.t_ns > a.t_ns => percent(a, b),
            _ => (None, None),
        }
    }

    /// The server's RSS over the per-second samples and the marks (KiB): first, least,
    /// most and last reading. None without --server-pid.
    pub fn rss_summary(&self) -> Option<RssSummary> {
        let mut samples: Vec<&Sample> = self.seconds.iter().chain(&self.marks).filter(|s| s.rss.is_some()).collect();
        samples.sort_by_key(|s| s.t_ns);
        let values: Vec<u64> = samples.iter().filter_map(|s| s.rss).collect();
        Some(RssSummary {
            first_kib: *values.first()?,
            min_kib: *values.iter().min()?,
            max_kib: *values.iter().max()?,
            last_kib: *values.last()?,
            samples: values.len(),
        })
    }

    pub fn per_second(&self) -> Vec<CpuSecond> {
        self.seconds
            .windows(2)
            .map(|w| {
                let (own, server) = percent(&w[0], &w[1]);
                CpuSecond { loadgen: own, server, server_rss_kib: w[1].rss }
            })
            .collect()
    }
}

fn percent(a: &Sample, b: &Sample) -> (Option<f64>, Option<f64>) {
    let secs = (b.t_ns - a.t_ns) as f64 / 1e9;
    let pct = |x: Option<u64>, y: Option<u64>| {
        let ticks = y?.checked_sub(x?)?;
        Some((ticks as f64 / TICKS_PER_SEC / secs * 1000.0).round() / 10.0)
    };
    (pct(a.own, b.own), pct(a.server, b.server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks("self").is_some());
        let (soft, hard) = fd_limits().expect("limits readable");
        assert!(soft <= hard);
    }

    #[test]
    fn rss_summary_of_samples() {
        let mut m = Monitor::new(None);
        assert!(m.rss_summary().is_none());
        for (t, rss) in [(0, 500), (1, 300), (2, 900), (3, 700)] {
            m.seconds.push(Sample { t_ns: t * 1_000_000_000, own: None, server: None, rss: Some(rss) });
        }
        let s = m.rss_summary().expect("samples with RSS");
        assert_eq!((s.first_kib, s.min_kib, s.max_kib, s.last_kib, s.samples), (500, 300, 900, 700, 4));
    }

    #[test]
    fn percent_of_ticks() {
        let a = Sample { t_ns: 0, own: Some(100), server: Some(0), rss: None };
        let b = Sample { t_ns: 2_000_000_000, own: Some(200), server: Some(300), rss: None };
        assert_eq!(percent(&a, &b), (Some(50.0), Some(150.0)));
    }
}
