//! confabd's administration subcommands: they work on a data directory while the daemon
//! is stopped (sled's lock makes them refuse while it runs), except `stats`, which asks a
//! running daemon over the protocol.

use clap::{Args, Subcommand};
use confab::admin::{self, AdminError};
use confab::apps::{qualify, DEFAULT_APP};
use confab::client::Client;
use confab::config::HashCost;
use confab::protocol::{Reply, Request};
use confab::stats::{AppLine, StatsLine};
use confab::store::{AppRecord, Store, StoreError};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the apps (tenants) this server hosts (daemon stopped).
    #[command(subcommand)]
    App(AppCommand),
    /// Manage user accounts (daemon stopped).
    User(UserArgs),
    /// Manage service tokens for the push API (daemon stopped).
    Service(ServiceArgs),
    /// Manage shops and their staff for customer support (daemon stopped).
    Shop(ShopArgs),
    /// Print what the data directory holds (daemon stopped).
    Storage(StorageArgs),
    /// Print live statistics of a running daemon, asked as a service. The token is read
    /// from the CONFAB_SERVICE_TOKEN environment variable, or else from standard input.
    Stats(StatsArgs),
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Host a new app: its users, groups, rooms and services are its own.
    Add {
        name: String,
        #[command(flatten)]
        limits: AppLimits,
    },
    /// Change an app's limits (from the next start).
    Set {
        name: String,
        #[command(flatten)]
        limits: AppLimits,
    },
    /// Stop hosting an app (refused while it has users, groups or services).
    Remove { name: String },
    /// List the apps with their limits and what they hold.
    List,
}

/// An app's limits; 0 (the default) means none.
#[derive(Args, Debug)]
pub struct AppLimits {
    /// Accounts the app may have.
    #[arg(long, default_value_t = 0)]
    max_users: u64,
    /// Users of the app logged in at once.
    #[arg(long, default_value_t = 0)]
    max_connections: u64,
    /// Groups the app may have.
    #[arg(long, default_value_t = 0)]
    max_groups: u64,
}

impl AppLimits {
    fn record(&self) -> AppRecord {
        AppRecord {
            max_users: self.max_users,
            max_connections: self.max_connections,
            max_groups: self.max_groups,
            created_ms: 0,
        }
    }
}

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    /// The app the user is in.
    #[arg(long, global = true, default_value = DEFAULT_APP)]
    app: String,
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
    /// List the app's accounts.
    List,
    /// List the user's devices: id (`(legacy)` for a client that names none) and when it was
    /// last seen, in ms since the epoch.
    Devices { name: String },
    /// Forget one of the user's devices (a lost phone): its resume token stops working and
    /// its positions no longer hold messages. An empty id is the legacy device.
    DeviceRemove { name: String, device: String },
}

#[derive(Args, Debug)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
    /// The app the service is in (and whose users it serves).
    #[arg(long, global = true, default_value = DEFAULT_APP)]
    app: String,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a service (or give it a new token) and print its token, shown only this once.
    Add {
        name: String,
        /// The service may be the push gateway: receive push events for offline users of
        /// every app (SubscribePush). Services of the app default only. Adding again
        /// without this flag takes the permission away.
        #[arg(long)]
        push: bool,
    },
    /// Remove a service; its token stops working.
    Remove { name: String },
    /// List the app's services.
    List,
}

#[derive(Args, Debug)]
pub struct ShopArgs {
    #[command(subcommand)]
    command: ShopCommand,
    /// The app the shop (and its staff) are in.
    #[arg(long, global = true, default_value = DEFAULT_APP)]
    app: String,
}

#[derive(Subcommand, Debug)]
pub enum ShopCommand {
    /// Create a shop (a name like a username); customers write to it, its staff answer.
    Add { name: String },
    /// Remove a shop and its conversations. Refused while a conversation holds messages
    /// a reader has not acknowledged, unless --force.
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// List shops: name, id, staff, conversations.
    List,
    /// Manage a shop's staff.
    #[command(subcommand)]
    Staff(StaffCommand),
}

#[derive(Subcommand, Debug)]
pub enum StaffCommand {
    /// Make a user staff of the shop (at most --max-staff-per-shop).
    Add { shop: String, user: String },
    /// The user is no longer staff; the conversations it answered are released.
    Remove { shop: String, user: String },
    /// List the shop's staff.
    List { shop: String },
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
    /// The service's app: statistics of an app other than default are that app's only.
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
}

/// Runs a subcommand; the error is printed by the caller.
pub fn run(command: Command, data_dir: &Path, cost: HashCost, max_staff: usize) -> Result<(), String> {
    if let Command::Stats(args) = command {
        return stats(&args);
    }
    let store = Store::open(data_dir).map_err(|e| match e {
        StoreError::Damaged(_) | StoreError::Locked { .. } | StoreError::NoRoom(_) => e.to_string(),
        e => format!("cannot open {}: {e} (is confabd running on it? stop it first)", data_dir.display()),
    })?;
    match command {
        Command::App(command) => app(&store, command),
        Command::User(UserArgs { command, app }) => user(&store, &app, command, cost),
        Command::Service(ServiceArgs { command, app }) => service(&store, &app, command),
        Command::Shop(ShopArgs { command, app }) => shop(&store, &app, command, max_staff),
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

fn shop(store: &Store, app: &str, command: ShopCommand, max_staff: usize) -> Result<(), String> {
    let done = |r: Result<(), AdminError>| r.map_err(|e| e.to_string());
    let q = |name: &str| qualify(app, name);
    match command {
        ShopCommand::Add { name } => {
            let id = admin::add_shop(store, &q(&name)).map_err(|e| e.to_string())?;
            println!("created shop {name} (id {id})");
        }
        ShopCommand::Remove { name, force } => {
            done(admin::remove_shop(store, &q(&name), force))?;
            println!("removed shop {name}");
        }
        ShopCommand::List => {
            for shop in admin::list_shops(store, app).map_err(|e| e.to_string())? {
                println!("{}\t{}\t{} staff\t{} conversations", shop.name, shop.id, shop.staff, shop.conversations);
            }
        }
        ShopCommand::Staff(StaffCommand::Add { shop, user }) => {
            done(admin::add_staff(store, &q(&shop), &q(&user), max_staff))?;
            println!("{user} is staff of {shop}");
        }
        ShopCommand::Staff(StaffCommand::Remove { shop, user }) => {
            done(admin::remove_staff(store, &q(&shop), &q(&user)))?;
            println!("{user} is no longer staff of {shop}");
        }
        ShopCommand::Staff(StaffCommand::List { shop }) => {
            for user in admin::list_staff(store, &q(&shop)).map_err(|e| e.to_string())? {
                println!("{user}");
            }
        }
    }
    Ok(())
}

fn app(store: &Store, command: AppCommand) -> Result<(), String> {
    let done = |r: Result<(), AdminError>| r.map_err(|e| e.to_string());
    match command {
        AppCommand::Add { name, limits } => {
            done(admin::add_app(store, &name, limits.record()))?;
            println!("added app {name}");
        }
        AppCommand::Set { name, limits } => {
            done(admin::set_app_limits(store, &name, limits.record()))?;
            println!("limits of {name} set; they apply from the next start");
        }
        AppCommand::Remove { name } => {
            done(admin::remove_app(store, &name))?;
            println!("removed app {name}");
        }
        AppCommand::List => {
            let limit = |max: u64| if max == 0 { "-".to_string() } else { max.to_string() };
            for app in admin::list_apps(store).map_err(|e| e.to_string())? {
                let l = app.limits;
                println!(
                    "{}\tusers {}/{}\tconnections -/{}\tgroups {}/{}\tservices {}",
                    app.name,
                    app.users,
                    limit(l.max_users),
                    limit(l.max_connections),
                    app.groups,
                    limit(l.max_groups),
                    app.services
                );
            }
        }
    }
    Ok(())
}

fn user(store: &Store, app: &str, command: UserCommand, cost: HashCost) -> Result<(), String> {
    let done = |r: Result<(), AdminError>| r.map_err(|e| e.to_string());
    let qualified = |name: &str| qualify(app, name);
    match command {
        UserCommand::Add { name } => {
            let id =
                admin::add_user(store, &qualified(&name), &read_line("password")?, cost).map_err(|e| e.to_string())?;
            println!("created {name} (user id {id})");
        }
        UserCommand::Passwd { name } => {
            done(admin::set_password(store, &qualified(&name), &read_line("password")?, cost))?;
            println!("password of {name} changed; its resume tokens are revoked");
        }
        UserCommand::Admin { name, off } => {
            done(admin::set_admin(store, &qualified(&name), !off))?;
            println!("{name} is {}an administrator", if off { "no longer " } else { "" });
        }
        UserCommand::Delete { name } => {
            done(admin::delete_user(store, &qualified(&name)))?;
            println!("deleted {name}");
        }
        UserCommand::List => {
            for user in admin::list_users(store, app).map_err(|e| e.to_string())? {
                let role = if user.admin { "admin" } else { "user" };
                println!("{}\t{}\t{}\t{}", user.username, user.user_id, role, user.display_name);
            }
        }
        UserCommand::Devices { name } => {
            for device in admin::list_devices(store, &qualified(&name)).map_err(|e| e.to_string())? {
                let id = if device.device.is_empty() { "(legacy)" } else { device.device.as_str() };
                println!("{id}\t{}", device.last_seen_ms);
            }
        }
        UserCommand::DeviceRemove { name, device } => {
            done(admin::remove_device(store, &qualified(&name), &device))?;
            println!("forgot {name}'s device {device:?}; its token no longer works");
        }
    }
    Ok(())
}

fn service(store: &Store, app: &str, command: ServiceCommand) -> Result<(), String> {
    match command {
        ServiceCommand::Add { name, push } => {
            let token = admin::add_service(store, &qualify(app, &name), push).map_err(|e| e.to_string())?;
            println!("{token}");
        }
        ServiceCommand::Remove { name } => {
            admin::remove_service(store, &qualify(app, &name)).map_err(|e| e.to_string())?;
            println!("removed service {name}");
        }
        ServiceCommand::List => {
            for (name, push) in admin::list_services(store, app).map_err(|e| e.to_string())? {
                println!("{name}{}", if push { " (push)" } else { "" });
            }
        }
    }
    Ok(())
}

fn stats(args: &StatsArgs) -> Result<(), String> {
    let token = match std::env::var("CONFAB_SERVICE_TOKEN") {
        Ok(token) => token,
        Err(_) => read_line("service token")?,
    };
    let connected = Client::connect_to_app(args.server, "confabd-stats", &args.app);
    let (mut client, _) = connected.map_err(|e| format!("{}: {e}", args.server))?;
    client.request(Request::ServiceLogin { name: args.service.clone(), token }).map_err(|e| e.to_string())?;
    match client.request(Request::Stats).map_err(|e| e.to_string())? {
        Reply::Stats(s) => print!("{:#}", StatsLine(&s)),
        Reply::AppStats(app) => print!("{:#}", AppLine(&app)),
        _ => return Err("the server answered Stats with something else".into()),
    }
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
