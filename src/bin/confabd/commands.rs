//! confabd's administration subcommands: they work on a data directory while the daemon
//! is stopped (sled's lock makes them refuse while it runs), except `stats`, which asks a
//! running daemon over the protocol.

use clap::{Args, Subcommand};
use confab::admin::{self, AdminError};
use confab::client::Client;
use confab::config::HashCost;
use confab::protocol::{Reply, Request};
use confab::stats::StatsLine;
use confab::store::{Store, StoreError};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage user accounts (daemon stopped).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage service tokens for the push API (daemon stopped).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print what the data directory holds (daemon stopped).
    Storage(StorageArgs),
    /// Print live statistics of a running daemon, asked as a service. The token is read
    /// from the CONFAB_SERVICE_TOKEN environment variable, or else from standard input.
    Stats(StatsArgs),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is read from standard input (one line).
    Add { name: String },
    /// Set a new password (read from standard input) and revoke the user's resume tokens.
    Passwd { name: String },
    /// Mark the user an administrator (may broadcast and read statistics), or unmark.
    Admin {
        name: String,
        #[arg(long)]
        off: bool,
    },
    /// Delete the account, its stored messages and tokens; its groups pass to another member.
    Delete { name: String },
    /// List accounts.
    List,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a service (or give it a new token) and print its token, shown only this once.
    Add {
        name: String,
        /// The service may be the push gateway: receive push events for offline users
        /// (SubscribePush). Adding again without this flag takes the permission away.
        #[arg(long)]
        push: bool,
    },
    /// Remove a service; its token stops working.
    Remove { name: String },
    /// List services.
    List,
}

#[derive(Args, Debug)]
pub struct StorageArgs {
    /// Check every invariant the server relies on (records decode, no sequence missing
    /// from any conversation, positions within range, the commit log's checksums; the log
    /// is replayed as at a start) and list what is wrong; exits 1 if anything is.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The running daemon.
    #[arg(long, default_value_t = confab::Config::default().listen)]
    pub server: SocketAddr,
    /// The service to log in as.
    #[arg(long)]
    pub service: String,
}

/// Runs a subcommand; the error is printed by the caller.
pub fn run(command: Command, data_dir: &Path, cost: HashCost) -> Result<(), String> {
    if let Command::Stats(args) = command {
        return stats(&args);
    }
    let store = Store::open(data_dir).map_err(|e| match e {
        StoreError::Damaged(_) | StoreError::Locked { .. } | StoreError::NoRoom(_) => e.to_string(),
        e => format!("cannot open {}: {e} (is confabd running on it? stop it first)", data_dir.display()),
    })?;
    let done = |r: Result<(), AdminError>| r.map_err(|e| e.to_string());
    match command {
        Command::User(UserCommand::Add { name }) => {
            let id = admin::add_user(&store, &name, &read_line("password")?, cost).map_err(|e| e.to_string())?;
            println!("created {name} (user id {id})");
            Ok(())
        }
        Command::User(UserCommand::Passwd { name }) => {
            done(admin::set_password(&store, &name, &read_line("password")?, cost))?;
            println!("password of {name} changed; its resume tokens are revoked");
            Ok(())
        }
        Command::User(UserCommand::Admin { name, off }) => {
            done(admin::set_admin(&store, &name, !off))?;
            println!("{name} is {}an administrator", if off { "no longer " } else { "" });
            Ok(())
        }
        Command::User(UserCommand::Delete { name }) => {
            done(admin::delete_user(&store, &name))?;
            println!("deleted {name}");
            Ok(())
        }
        Command::User(UserCommand::List) => {
            for user in admin::list_users(&store).map_err(|e| e.to_string())? {
                let role = if user.admin { "admin" } else { "user" };
                println!("{}\t{}\t{}\t{}", user.username, user.user_id, role, user.display_name);
            }
            Ok(())
        }
        Command::Service(ServiceCommand::Add { name, push }) => {
            let token = admin::add_service(&store, &name, push).map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        Command::Service(ServiceCommand::Remove { name }) => {
            done(admin::remove_service(&store, &name))?;
            println!("removed service {name}");
            Ok(())
        }
        Command::Service(ServiceCommand::List) => {
            for (name, push) in admin::list_services(&store).map_err(|e| e.to_string())? {
                println!("{name}{}", if push { " (push)" } else { "" });
            }
            Ok(())
        }
        Command::Storage(StorageArgs { verify: true }) => {
            let report = store.verify().map_err(|e| e.to_string())?;
            println!("users\t{}", report.accounts);
            println!("groups\t{}", report.groups);
            println!("stored messages\t{}", report.messages);
            println!("push events\t{}", report.push_events);
            if report.problems.is_empty() {
                println!("ok: no problems found");
                return Ok(());
            }
            for problem in &report.problems {
                println!("problem\t{problem}");
            }
            Err(format!("{} problems found in {}", report.problems.len(), data_dir.display()))
        }
        Command::Storage(StorageArgs { verify: false }) => {
            let stats = admin::storage_stats(&store).map_err(|e| e.to_string())?;
            println!("users\t{}", stats.accounts);
            println!("groups\t{}", stats.groups);
            println!("stored messages\t{}", stats.stored_messages);
            println!("bytes on disk\t{}", stats.size_on_disk);
            Ok(())
        }
        Command::Stats(_) => unreachable!("handled above"),
    }
}

fn stats(args: &StatsArgs) -> Result<(), String> {
    let token = match std::env::var("CONFAB_SERVICE_TOKEN") {
        Ok(token) => token,
        Err(_) => read_line("service token")?,
    };
    let (mut client, _) = Client::connect(args.server, "confabd-stats").map_err(|e| format!("{}: {e}", args.server))?;
    client.request(Request::ServiceLogin { name: args.service.clone(), token }).map_err(|e| e.to_string())?;
    let Reply::Stats(s) = client.request(Request::Stats).map_err(|e| e.to_string())? else {
        return Err("the server answered Stats with something else".into());
    };
    print!("{:#}", StatsLine(&s));
    Ok(())
}

/// One line from standard input, without its newline. Secrets never come as arguments:
/// those show in the process list.
fn read_line(what: &str) -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading the {what}: {e}"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        return Err(format!("no {what} on standard input"));
    }
    Ok(line)
}
