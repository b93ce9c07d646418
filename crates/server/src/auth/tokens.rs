//! etcd's simple tokens: random strings every member keeps (Authenticate
//! goes through the log, so each member learns each token), valid until
//! `--auth-token-ttl` seconds pass without a use. They live in memory
//! only: a restarted member has none, and clients authenticate again on
//! `etcdserver: invalid auth token`, as they do with etcd.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most tokens a member keeps; past it the least recently used goes.
pub(crate) const MAX_TOKENS: usize = 65_536;
/// Random letters before the `.`, as etcd's simple tokens have.
const TOKEN_LETTERS: usize = 16;

#[derive(Debug)]
struct Entry {
    user: String,
    last_used: Instant,
}

/// The tokens this member knows.
#[derive(Debug)]
pub(crate) struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Entry>>,
}

impl SimpleTokens {
    /// Tokens valid for `ttl` after their last use.
    pub(crate) fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh token: `<16 random letters>.<index>`, as etcd forms them.
    pub(crate) fn generate(index: u64) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; TOKEN_LETTERS];
        getrandom::fill(&mut raw)?;
        let letters: String = raw
            .iter()
            .map(|b| {
                let i = b % 52;
                (if i < 26 { b'a' + i } else { b'A' + i - 26 }) as char
            })
            .collect();
        Ok(format!("{letters}.{index}"))
    }

    /// Records `token` as `user`'s, from now.
    pub(crate) fn assign(&self, token: String, user: String, now: Instant) {
        let mut t = self.tokens.lock();
        if t.len() >= MAX_TOKENS {
            t.retain(|_, e| now.duration_since(e.last_used) < self.ttl);
        }
        if t.len() >= MAX_TOKENS {
            let oldest = t
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                t.remove(&k);
            }
        }
        t.insert(
            token,
            Entry {
                user,
                last_used: now,
            },
        );
        debug_assert!(t.len() <= MAX_TOKENS);
    }

    /// The user of a live token (its use restarts its TTL); `None` for an
    /// unknown or expired one.
    pub(crate) fn user_of(&self, token: &str, now: Instant) -> Option<String> {
        let mut t = self.tokens.lock();
        let e = t.get_mut(token)?;
        if now.duration_since(e.last_used) >= self.ttl {
            t.remove(token);
            return None;
        }
        e.last_used = now;
        Some(e.user.clone())
    }

    /// Forgets `user`'s tokens (deleted, or its password changed).
    pub(crate) fn invalidate_user(&self, user: &str) {
        self.tokens.lock().retain(|_, e| e.user != user);
    }

    /// Forgets every token (auth disabled).
    pub(crate) fn clear(&self) {
        self.tokens.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_the_ttl_without_use_and_each_use_extends_them() {
        let t = SimpleTokens::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        t.assign("a.1".into(), "alice".into(), t0);
        assert_eq!(t.user_of("a.1", s(9)).as_deref(), Some("alice"));
        assert_eq!(
            t.user_of("a.1", s(18)).as_deref(),
            Some("alice"),
            "extended"
        );
        assert_eq!(t.user_of("a.1", s(28)), None, "expired");
        assert_eq!(t.user_of("a.1", s(1)), None, "and gone");
        assert_eq!(t.user_of("nope", t0), None);
    }

    #[test]
    fn invalidation_forgets_only_that_users_tokens() {
        let t = SimpleTokens::new(Duration::from_secs(10));
        let now = Instant::now();
        t.assign("a.1".into(), "alice".into(), now);
        t.assign("b.1".into(), "bob".into(), now);
        t.invalidate_user("alice");
        assert_eq!(t.user_of("a.1", now), None);
        assert_eq!(t.user_of("b.1", now).as_deref(), Some("bob"));
        t.clear();
        assert_eq!(t.user_of("b.1", now), None);
    }

    #[test]
    fn the_store_is_bounded_and_drops_the_least_recently_used() {
        let t = SimpleTokens::new(Duration::from_secs(1000));
        let t0 = Instant::now();
        for i in 0..MAX_TOKENS {
            t.assign(
                format!("t.{i}"),
                "u".into(),
                t0 + Duration::from_millis(i as u64),
            );
        }
        let later = t0 + Duration::from_secs(100);
        t.assign("new.1".into(), "u".into(), later);
        assert_eq!(t.tokens.lock().len(), MAX_TOKENS);
        assert_eq!(t.user_of("t.0", later), None, "the oldest went");
        assert!(t.user_of("t.1", later).is_some());
        assert!(t.user_of("new.1", later).is_some());
    }

    #[test]
    fn generated_tokens_look_like_etcds_and_differ() {
        let a = SimpleTokens::generate(7).unwrap();
        let b = SimpleTokens::generate(7).unwrap();
        assert_ne!(a, b);
        let (letters, index) = a.split_once('.').unwrap();
        assert_eq!(letters.len(), 16);
        assert!(letters.chars().all(|c| c.is_ascii_alphabetic()));
        assert_eq!(index, "7");
    }
}
