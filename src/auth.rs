//! Password hashing on threads of its own: argon2id is slow on purpose, and neither the
//! event loop nor a worker (which owns the message path of its users) may wait for it.
//!
//! A job carries a callback; the hashing thread runs it with the outcome, and the callback
//! posts the result back to the worker that asked.

use crate::config::HashCost;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::thread::JoinHandle;

type Callback<T> = Box<dyn FnOnce(T) + Send>;

enum Job {
    Hash { password: String, done: Callback<Option<String>> },
    Verify { password: String, phc: String, done: Callback<bool> },
}

/// A pool of hashing threads. Dropping every clone of the pool ends the threads once the
/// queued jobs are done.
#[derive(Clone)]
pub struct Hasher {
    // Unbounded on purpose: a worker must never block on the hasher, and the hasher's own
    // sends back to workers may block; bounded both ways could deadlock.
    jobs: Sender<Job>,
}

impl Hasher {
    pub fn start(threads: usize, cost: HashCost) -> (Hasher, Vec<JoinHandle<()>>) {
        let (jobs, queue) = unbounded();
        let handles = (0..threads.max(1))
            .map(|i| {
                let queue: Receiver<Job> = queue.clone();
                std::thread::Builder::new()
                    .name(format!("confab-hash-{i}"))
                    .spawn(move || run(queue, cost))
                    .expect("spawning a hashing thread")
            })
            .collect();
        (Hasher { jobs }, handles)
    }

    /// Hashes a new password; `done` gets the PHC string, or None if hashing failed.
    pub fn hash(&self, password: String, done: impl FnOnce(Option<String>) + Send + 'static) {
        let _ = self.jobs.send(Job::Hash { password, done: Box::new(done) });
    }

    /// Checks a password against a stored PHC string; `done` gets whether it matched.
    pub fn verify(&self, password: String, phc: String, done: impl FnOnce(bool) + Send + 'static) {
        let _ = self.jobs.send(Job::Verify { password, phc, done: Box::new(done) });
    }
}

fn argon(cost: HashCost) -> Argon2<'static> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None).unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn run(queue: Receiver<Job>, cost: HashCost) {
    let argon = argon(cost);
    for job in queue {
        match job {
            Job::Hash { password, done } => done(hash_password(&argon, &password)),
            Job::Verify { password, phc, done } => done(verify_password(&password, &phc)),
        }
    }
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
        let (hasher, handles) = Hasher::start(1, HashCost::MINIMUM);
        let (tx, rx) = crossbeam_channel::bounded(1);
        hasher.hash("secret password".into(), move |phc| tx.send(phc).unwrap());
        let phc = rx.recv().unwrap().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        hasher.verify("secret password".into(), phc, move |ok| tx.send(ok).unwrap());
        assert!(rx.recv().unwrap());
        drop(hasher);
        for h in handles {
            h.join().unwrap();
        }
    }
}
