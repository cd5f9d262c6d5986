//! The streaming server's tokens: what an Exec, Attach or PortForward call
//! granted, until its client connects. As kubelet's request cache: random,
//! single use, gone after a minute unused, and bounded in number.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a token waits for its client (kubelet's cache TTL).
pub const TTL: Duration = Duration::from_secs(60);
/// The most tokens outstanding (kubelet's in-flight bound).
pub const MAX: usize = 1000;
/// A token's length: 128 random bits in hex.
pub const LEN: usize = 32;

/// The cache is full of live tokens.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Tokens and what each grants.
pub struct Tokens<T> {
    map: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Default for Tokens<T> {
    fn default() -> Self {
        Tokens {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Tokens<T> {
    /// A new token for `grant`.
    pub fn insert(&self, grant: T) -> Result<String, Full> {
        self.insert_at(grant, Instant::now())
    }

    /// Takes the grant of `token`, once, if it has not expired.
    pub fn take(&self, token: &str) -> Option<T> {
        self.take_at(token, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        // A panic while holding it leaves a map that is still whole.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_at(&self, grant: T, now: Instant) -> Result<String, Full> {
        let mut map = self.lock();
        // Expired grants go at every insert (at most MAX entries to look
        // at): an Exec grant holds its command, up to a MiB.
        map.retain(|_, (at, _)| !expired(*at, now));
        if map.len() >= MAX {
            return Err(Full);
        }
        let token = loop {
            let t = hex::encode(rand::random::<[u8; LEN / 2]>());
            // 128 random bits do not collide; the loop costs nothing.
            if !map.contains_key(&t) {
                break t;
            }
        };
        map.insert(token.clone(), (now, grant));
        Ok(token)
    }

    fn take_at(&self, token: &str, now: Instant) -> Option<T> {
        let (at, grant) = self.lock().remove(token)?;
        (!expired(at, now)).then_some(grant)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn expired(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) >= TTL
}

/// Whether `s` has a token's form (so a path that cannot be one is
/// answered without a lookup, and never echoed).
pub fn well_formed(s: &str) -> bool {
    s.len() == LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_random_hex_and_used_once() {
        let t = Tokens::default();
        let a = t.insert("a").unwrap();
        let b = t.insert("b").unwrap();
        assert!(well_formed(&a) && well_formed(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(t.take(&a), Some("a"));
        assert_eq!(t.take(&a), None);
        assert_eq!(t.take("nope"), None);
        assert_eq!(t.take(&b), Some("b"));
        assert!(!well_formed("0123"));
        assert!(!well_formed(&"g".repeat(LEN)));
    }

    #[test]
    fn tokens_expire_after_a_minute() {
        let t = Tokens::default();
        let now = Instant::now();
        let a = t.insert_at(1, now).unwrap();
        let b = t.insert_at(2, now).unwrap();
        assert_eq!(t.take_at(&a, now + TTL - Duration::from_millis(1)), Some(1));
        assert_eq!(t.take_at(&b, now + TTL), None);
        // An expired token is gone for good, not just refused.
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn outstanding_tokens_are_bounded_and_expired_ones_make_room() {
        let t = Tokens::default();
        let now = Instant::now();
        for i in 0..MAX {
            t.insert_at(i, now).unwrap();
        }
        assert_eq!(t.insert_at(0, now + Duration::from_secs(1)), Err(Full));
        // Once they have expired, new ones fit again.
        let later = now + TTL;
        let c = t.insert_at(7, later).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_at(&c, later), Some(7));
    }
}
