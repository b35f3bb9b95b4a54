//! confab-loadgen: the stress client of confab. One run is one scenario (direct messages,
//! idle connections, offline drain, logins) against one server, or the nodes of a cluster
//! (several `--addr`; clients follow redirects to their home nodes), bounded in time.
//! It prepares its own accounts, drives thousands of connections from its own mio event
//! loop(s), and reports throughput, latency percentiles (HDR histograms), errors, CPU of
//! both processes, and an exactly-once check of every receipted message.
//!
//! `--help` explains the scenarios and how much CPU the tool itself needs.

mod accounts;
mod bitset;
mod cli;
mod clock;
mod engine;
mod error;
mod payload;
mod plot;
mod procfs;
mod progress;
mod report;
mod scenario;
mod stats;

use clap::Parser;
use cli::{Cli, Scenario};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    clock::now_ns(); // fixes the epoch before anything is stamped
    let seed = clock::random_seed();
    let ctx = scenario::Ctx {
        common: cli.common.clone(),
        // Never 0, so (run << 32 | seq) never collides with a small client_msg_id.
        run_id: ((seed >> 32) as u32).max(1),
        seed,
    };
    let result = match &cli.scenario {
        Scenario::Direct(args) => scenario::direct::run(&ctx, args),
        Scenario::Connections(args) => scenario::connections::run(&ctx, args),
        Scenario::Offline(args) => scenario::offline::run(&ctx, args),
        Scenario::Login(args) => scenario::login::run(&ctx, args),
        Scenario::Group(args) => scenario::group::run(&ctx, args),
        Scenario::Room(args) => scenario::room::run(&ctx, args),
        Scenario::Soak(args) => scenario::soak::run(&ctx, args),
    };
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("confab-loadgen {}: {e}", cli.scenario.name());
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.summary());
    let mut status = if report.correctness.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    if let Some(path) = &cli.common.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("confab-loadgen: {e}");
            status = ExitCode::FAILURE;
        }
    }
    if let Some(path) = &cli.common.plot {
        if let Err(e) = plot::draw(&report, path) {
            eprintln!("confab-loadgen: {e}");
            status = ExitCode::FAILURE;
        }
    }
    status
}
