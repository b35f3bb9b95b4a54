//! Three confabd nodes on one NATS bus, for the cluster tests: each the real binary as a
//! child process ([`Daemon`]) with the test settings, a data directory of its own in a
//! temporary directory, and a port of 127.0.0.1 chosen before any node starts, because
//! every node is given the whole list (`--nodes "1=127.0.0.1:P1,2=...,3=..."`) at start.
//!
//! A node can be killed with SIGKILL and restarted on the same port and data directory
//! (the other nodes, and the users' clients, know it by that address only), or stopped
//! as an operator would. Dropping the cluster kills whatever still runs and removes the
//! data directories.

use crate::ports::free_ports;
use crate::Daemon;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The nodes' ids, in the order they start.
pub const NODE_IDS: [u32; 3] = [1, 2, 3];

/// Times the whole cluster is started again on new ports when a node finds its port taken
/// (by another program, between choosing the port and binding it).
const START_ATTEMPTS: u32 = 10;

/// How long a restarted node waits for its port to be free again before giving up.
const PORT_WAIT: Duration = Duration::from_secs(20);

/// confabd's log line when its port is taken.
const PORT_TAKEN: &str = "Address already in use";

pub struct Cluster {
    binary: PathBuf,
    /// `--cluster`'s value: the NATS URLs, comma-separated.
    nats: String,
    /// Flags after the cluster flags and the test flags, as the test gave them.
    flags: Vec<String>,
    /// In [`NODE_IDS`] order. Declared before `scratch`, so the daemons are killed before
    /// their directories are removed.
    nodes: Vec<Node>,
    scratch: ScratchDir,
}

struct Node {
    id: u32,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// `None` while the node is killed or stopped.
    daemon: Option<Daemon>,
}

impl Cluster {
    /// Starts confabd nodes 1, 2 and 3 of `binary` on the bus `nats` (`--cluster`'s value:
    /// one URL, or several comma-separated), each with the test flags and then `flags`;
    /// returns once every node listens. Panics if a node does not start.
    pub fn start(binary: &Path, nats: &str, flags: &[&str]) -> Cluster {
        let scratch = ScratchDir::new();
        let mut cluster = Cluster {
            binary: binary.to_path_buf(),
            nats: nats.to_string(),
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
            nodes: Vec::new(),
            scratch,
        };
        for attempt in 1..=START_ATTEMPTS {
            // Fresh ports and fresh data directories: nodes of a failed attempt may have
            // recorded the list they were given.
            let ports = free_ports(NODE_IDS.len());
            cluster.nodes = NODE_IDS
                .iter()
                .zip(ports)
                .map(|(&id, port)| Node {
                    id,
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    data_dir: cluster.scratch.path().join(format!("attempt-{attempt}-node-{id}")),
                    daemon: None,
                })
                .collect();
            let mut port_taken = false;
            for index in 0..cluster.nodes.len() {
                match cluster.spawn(index) {
                    Ok(daemon) => cluster.nodes[index].daemon = Some(daemon),
                    Err(log) if log.contains(PORT_TAKEN) => {
                        port_taken = true;
                        break;
                    }
                    Err(log) => panic!("cluster node {} did not start; it logged:\n{log}", cluster.nodes[index].id),
                }
            }
            if !port_taken {
                return cluster;
            }
            // Dropping the daemons kills those that started.
            cluster.nodes.clear();
        }
        panic!("cluster nodes found their ports taken {START_ATTEMPTS} times in a row");
    }

    /// The nodes' ids: 1, 2, 3.
    pub fn ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The address clients of node `id` connect to (the same after a restart).
    pub fn addr(&self, id: u32) -> SocketAddr {
        self.node(id).addr
    }

    /// `--nodes`'s value, as every node was given it: `1=127.0.0.1:P1,2=...,3=...`.
    pub fn nodes_flag(&self) -> String {
        self.nodes.iter().map(|node| format!("{}={}", node.id, node.addr)).collect::<Vec<_>>().join(",")
    }

    /// Node `id`'s data directory (created by confabd at its first start).
    pub fn data_dir(&self, id: u32) -> &Path {
        &self.node(id).data_dir
    }

    /// Node `id`'s daemon (its log, its pid). Panics if it is killed or stopped.
    pub fn daemon(&self, id: u32) -> &Daemon {
        self.node(id).daemon.as_ref().unwrap_or_else(|| panic!("cluster node {id} is not running"))
    }

    /// Whether node `id` runs (it was not killed or stopped, and did not die).
    pub fn is_running(&mut self, id: u32) -> bool {
        let node = self.node_mut(id);
        node.daemon.as_mut().is_some_and(|daemon| matches!(daemon.child.try_wait(), Ok(None)))
    }

    /// Kills node `id` with SIGKILL, as a crash or a power cut would, and waits until it
    /// is gone. Does nothing if it is not running.
    pub fn kill(&mut self, id: u32) {
        if let Some(mut daemon) = self.node_mut(id).daemon.take() {
            // An error means it has exited already; wait reaps it either way.
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
    }

    /// Stops node `id` as an operator would (SIGTERM) and checks that it exits cleanly.
    /// Does nothing if it is not running.
    pub fn stop(&mut self, id: u32) {
        if let Some(daemon) = self.node_mut(id).daemon.take() {
            daemon.stop();
        }
    }

    /// Starts node `id` again (killing it first if it runs) on the same port, data
    /// directory and flags; returns once it listens. A port still taken (a program took it
    /// while the node was down) is retried for a while, then panics.
    pub fn restart(&mut self, id: u32) {
        self.kill(id);
        let index = self.index(id);
        let deadline = Instant::now() + PORT_WAIT;
        loop {
            match self.spawn(index) {
                Ok(daemon) => {
                    self.nodes[index].daemon = Some(daemon);
                    return;
                }
                Err(log) if log.contains(PORT_TAKEN) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("cluster node {id} did not restart; it logged:\n{log}"),
            }
        }
    }

    /// Stops every node that runs (SIGTERM), checking that each exits cleanly.
    pub fn stop_all(mut self) {
        for node in &mut self.nodes {
            if let Some(daemon) = node.daemon.take() {
                daemon.stop();
            }
        }
    }

    /// Runs the node at `index` (not running) with its flags; the error is its log.
    fn spawn(&self, index: usize) -> Result<Daemon, String> {
        let node = &self.nodes[index];
        let mut command = Command::new(&self.binary);
        command
            .arg("--listen")
            .arg(node.addr.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cluster", &self.nats])
            .args(["--node-id", &node.id.to_string()])
            .args(["--nodes", &self.nodes_flag()])
            .args(crate::TEST_FLAGS)
            .args(&self.flags);
        Daemon::try_spawn(command).map_err(|log| log.join("\n"))
    }

    fn index(&self, id: u32) -> usize {
        self.nodes.iter().position(|node| node.id == id).unwrap_or_else(|| panic!("no cluster node {id}"))
    }

    fn node(&self, id: u32) -> &Node {
        &self.nodes[self.index(id)]
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        let index = self.index(id);
        &mut self.nodes[index]
    }
}

/// A directory of its own under the system's temporary directory, removed with
/// everything in it when dropped (std only: this crate depends on nothing).
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("confab-cluster-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return ScratchDir { path },
                // Left by an earlier process with this pid that was killed.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for confabd that logs its arguments and the line the harness waits for,
    /// then idles until SIGTERM (exit 0) or SIGKILL: the harness's own behaviour, tested
    /// without the server (whose cluster mode is tested in the server's tests).
    const FAKE_CONFABD: &str = r#"#!/bin/sh
echo "args: $*" >&2
trap 'exit 0' TERM
echo "fake confabd listening on $2" >&2
while :; do sleep 1; done
"#;

    fn fake_confabd(dir: &ScratchDir) -> PathBuf {
        let path = dir.path().join("confabd");
        std::fs::write(&path, FAKE_CONFABD).expect("write the fake confabd");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
        path
    }

    fn args_of(daemon: &Daemon) -> String {
        daemon.startup.iter().find_map(|line| line.strip_prefix("args: ")).expect("the args line").to_string()
    }

    #[test]
    fn every_node_gets_the_whole_list_and_a_restart_keeps_port_and_directory() {
        let bin = ScratchDir::new();
        let mut cluster = Cluster::start(&fake_confabd(&bin), "nats://127.0.0.1:4999", &["--log-level", "debug"]);
        assert_eq!(cluster.ids(), vec![1, 2, 3]);
        let nodes = cluster.nodes_flag();
        assert_eq!(nodes, format!("1={},2={},3={}", cluster.addr(1), cluster.addr(2), cluster.addr(3)));
        for id in cluster.ids() {
            let addr = cluster.addr(id);
            assert_eq!(cluster.daemon(id).addr, addr);
            assert!(addr.ip().is_loopback());
            let args = args_of(cluster.daemon(id));
            let data = cluster.data_dir(id).display().to_string();
            let expected = format!(
                "--listen {addr} --data-dir {data} --cluster nats://127.0.0.1:4999 --node-id {id} --nodes {nodes} {} --log-level debug",
                crate::TEST_FLAGS.join(" ")
            );
            assert_eq!(args, expected);
        }

        let before = args_of(cluster.daemon(2));
        let pid = cluster.daemon(2).pid();
        cluster.kill(2);
        assert!(!cluster.is_running(2));
        cluster.restart(2);
        assert!(cluster.is_running(2));
        assert_ne!(cluster.daemon(2).pid(), pid);
        assert_eq!(args_of(cluster.daemon(2)), before, "same port, data directory and flags");

        cluster.stop(3);
        assert!(!cluster.is_running(3));
        assert!(cluster.is_running(1));
        cluster.stop_all();
    }

    #[test]
    fn dropping_the_cluster_kills_the_nodes_and_removes_their_directories() {
        let bin = ScratchDir::new();
        let cluster = Cluster::start(&fake_confabd(&bin), "nats://127.0.0.1:4999", &[]);
        let pids: Vec<u32> = cluster.ids().iter().map(|&id| cluster.daemon(id).pid()).collect();
        let scratch = cluster.scratch.path().to_path_buf();
        std::fs::create_dir_all(cluster.data_dir(1)).expect("a data directory, as confabd would make");
        drop(cluster);
        assert!(!scratch.exists());
        for pid in pids {
            // Killed and reaped: no process of that pid is ours any more.
            assert!(!is_alive(pid), "node process {pid} still runs");
        }
    }

    /// Whether `pid` is a live process (not gone, not a zombie).
    fn is_alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
    }
}
