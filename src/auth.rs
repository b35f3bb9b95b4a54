//! Password hashing on threads of its own: argon2id is slow on purpose, and neither the
//! event loop nor a worker (which owns the message path of its users) may wait for it.
//!
//! Two bounded queues feed the threads: password checks (logins of existing users) and
//! new hashes (registrations). A thread always takes a waiting check first, so a flood of
//! registrations delays logins by at most the hashes already running. A full queue
//! refuses the job at once with an estimate of when to try again (from the measured
//! time per hash), rather than letting waits grow without bound.
//!
//! A job carries a callback; the hashing thread runs it with the outcome, and the callback
//! posts the result back to the worker that asked.

use crate::config::HashCost;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Callback<T> = Box<dyn FnOnce(T) + Send>;

enum Job {
    Hash { password: String, done: Callback<Option<String>> },
    Verify { password: String, phc: String, done: Callback<bool> },
}

/// The queue for this job is full; try again after about `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    pub retry_after: Duration,
}

/// The time per hash assumed before one was measured.
const FIRST_ESTIMATE: Duration = Duration::from_millis(50);
/// The shortest retry time given: sooner would only be refused again.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// A pool of hashing threads. Dropping every clone of the pool ends the threads once the
/// queued jobs are done.
#[derive(Clone)]
pub struct Hasher {
    // Bounded, and only ever used with try_send: a worker never blocks on the hasher (the
    // hasher's sends back to workers go to their unbounded internal queues).
    logins: Sender<Job>,
    registrations: Sender<Job>,
    threads: u32,
    /// A moving average of the time one job takes, in microseconds.
    micros_per_job: Arc<AtomicU64>,
}

impl Hasher {
    /// Starts `threads` hashing threads; at most `login_queue` checks and
    /// `register_queue` new hashes wait.
    pub fn start(
        threads: usize,
        cost: HashCost,
        login_queue: usize,
        register_queue: usize,
    ) -> (Hasher, Vec<JoinHandle<()>>) {
        let (logins, login_jobs) = bounded(login_queue.max(1));
        let (registrations, register_jobs) = bounded(register_queue.max(1));
        let micros_per_job = Arc::new(AtomicU64::new(FIRST_ESTIMATE.as_micros() as u64));
        let threads = threads.max(1);
        let handles = (0..threads)
            .map(|i| {
                let queues: (Receiver<Job>, Receiver<Job>) = (login_jobs.clone(), register_jobs.clone());
                let average = micros_per_job.clone();
                std::thread::Builder::new()
                    .name(format!("confab-hash-{i}"))
                    .spawn(move || run(queues, cost, &average))
                    .expect("spawning a hashing thread")
            })
            .collect();
        let threads = u32::try_from(threads).unwrap_or(u32::MAX);
        (Hasher { logins, registrations, threads, micros_per_job }, handles)
    }

    /// Hashes a new password; `done` gets the PHC string, or None if hashing failed.
    pub fn hash(&self, password: String, done: impl FnOnce(Option<String>) + Send + 'static) -> Result<(), Busy> {
        self.submit(&self.registrations, Job::Hash { password, done: Box::new(done) })
    }

    /// Checks a password against a stored PHC string; `done` gets whether it matched.
    pub fn verify(&self, password: String, phc: String, done: impl FnOnce(bool) + Send + 'static) -> Result<(), Busy> {
        self.submit(&self.logins, Job::Verify { password, phc, done: Box::new(done) })
    }

    fn submit(&self, queue: &Sender<Job>, job: Job) -> Result<(), Busy> {
        match queue.try_send(job) {
            Ok(()) => Ok(()),
            // Disconnected only during shutdown, when no answer is expected any more.
            Err(TrySendError::Disconnected(_)) => Ok(()),
            Err(TrySendError::Full(_)) => {
                // The logins queued ahead (always served first), this queue, and the job
                // itself, shared among the threads.
                let ahead = self.logins.len() as u32 + queue.len() as u32 + 1;
                let per_job = Duration::from_micros(self.micros_per_job.load(Ordering::Relaxed));
                Err(Busy { retry_after: (per_job.saturating_mul(ahead) / self.threads).max(MIN_RETRY) })
            }
        }
    }
}

/// The next job, a password check before any registration.
fn next_job(logins: &Receiver<Job>, registrations: &Receiver<Job>) -> Option<Job> {
    if let Ok(job) = logins.try_recv() {
        return Some(job);
    }
    // Both senders live in the same Hasher, so both disconnect together; a job still
    // queued on the other side is taken before the thread ends.
    select! {
        recv(logins) -> job => job.ok().or_else(|| registrations.recv().ok()),
        recv(registrations) -> job => job.ok().or_else(|| logins.recv().ok()),
    }
}

fn argon(cost: HashCost) -> Argon2<'static> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None).unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn run((logins, registrations): (Receiver<Job>, Receiver<Job>), cost: HashCost, average: &AtomicU64) {
    let argon = argon(cost);
    while let Some(job) = next_job(&logins, &registrations) {
        let started = Instant::now();
        match job {
            Job::Hash { password, done } => {
                let phc = hash_password(&argon, &password);
                record(average, started);
                done(phc)
            }
            Job::Verify { password, phc, done } => {
                let ok = verify_password(&password, &phc);
                record(average, started);
                done(ok)
            }
        }
    }
}

/// Folds one job's time into the moving average (weight 1/8: a few jobs adapt it).
fn record(average: &AtomicU64, started: Instant) {
    let sample = started.elapsed().as_micros() as u64;
    let old = average.load(Ordering::Relaxed);
    average.store((old * 7 + sample) / 8, Ordering::Relaxed);
}

/// Hashes with a fresh random salt. Public for the administration commands, which run
/// without a daemon and so without the pool.
pub fn hash_with_cost(password: &str, cost: HashCost) -> Option<String> {
    hash_password(&argon(cost), password)
}

fn hash_password(argon: &Argon2<'_>, password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).ok()?;
    let salt = SaltString::encode_b64(&salt).ok()?;
    argon.hash_password(password.as_bytes(), &salt).ok().map(|h| h.to_string())
}

/// Verification reads the cost from the PHC string, so raising the default later does not
/// lock out accounts hashed at the old cost.
fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Bytes in a resume token.
pub const TOKEN_LEN: usize = 32;

/// A fresh resume token: 256 bits from the OS, or None if the OS has no randomness.
pub fn new_token() -> Option<[u8; TOKEN_LEN]> {
    let mut token = [0u8; TOKEN_LEN];
    getrandom::getrandom(&mut token).ok()?;
    Some(token)
}

/// What the store keeps of a token. A token is 256 random bits, so a fast hash is as
/// safe as a slow one; a leaked store still yields no usable token.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    use blake2::{Blake2s256, Digest};
    Blake2s256::digest(token).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_with_cost("correct horse", HashCost::MINIMUM).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), token_digest(&b));
    }

    #[test]
    fn pool_answers_through_callbacks() {
        let (hasher, handles) = Hasher::start(1, HashCost::MINIMUM, 4, 4);
        let (tx, rx) = crossbeam_channel::bounded(1);
        hasher.hash("secret password".into(), move |phc| tx.send(phc).unwrap()).unwrap();
        let phc = rx.recv().unwrap().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        hasher.verify("secret password".into(), phc, move |ok| tx.send(ok).unwrap()).unwrap();
        assert!(rx.recv().unwrap());
        drop(hasher);
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn checks_go_first_and_full_queues_refuse_with_a_retry_time() {
        let (hasher, handles) = Hasher::start(1, HashCost::MINIMUM, 2, 2);
        // Hold the only thread in a job until the queues are filled.
        let (release, hold) = crossbeam_channel::bounded::<()>(0);
        hasher
            .hash("first password".into(), move |_| {
                let _ = hold.recv();
            })
            .unwrap();
        let (order_tx, order) = crossbeam_channel::unbounded();
        let mut refused = Vec::new();
        for i in 0..3 {
            let tx = order_tx.clone();
            if let Err(busy) = hasher.hash("a password".into(), move |_| tx.send(format!("register {i}")).unwrap()) {
                refused.push(busy);
            }
        }
        // The held job may or may not have left the queue yet: one or two more fit.
        assert!(!refused.is_empty() && refused.iter().all(|b| b.retry_after >= MIN_RETRY));
        let phc = hash_with_cost("a password", HashCost::MINIMUM).unwrap();
        let tx = order_tx.clone();
        hasher.verify("a password".into(), phc, move |_| tx.send("login".to_string()).unwrap()).unwrap();
        // Wait until the thread is inside the held job, then let it go.
        release.send(()).unwrap();
        assert_eq!(order.recv().unwrap(), "login", "the check jumps the queued registrations");
        drop(hasher);
        for h in handles {
            h.join().unwrap();
        }
    }
}
