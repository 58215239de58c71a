//! Slowing down password guessing. Failures are counted per user name and per client
//! address; after `max_failures` of them, attempts are refused for an exponentially growing
//! time (without running argon2, so guessing also stops costing us CPU). Both maps are
//! bounded: an attacker sending endless new names or addresses evicts the oldest,
//! non-blocked entries first, never growing memory beyond `max_tracked` each.
//!
//! A per-name lock can be abused to lock a real user out. To blunt that, an address from
//! which a user recently signed in successfully skips the *name* check for that user (the
//! *address* check still applies), so an attacker elsewhere cannot lock out a client that
//! is already working.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ThrottleSettings;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// A map of at most `cap` entries that evicts the least recently used when full.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Makes room for one more entry: first drops entries `stale` says are useless, then,
    /// if still full, the one with the smallest `age_key` (preferring ones that `keep`
    /// does not protect). O(n), which is fine at a few thousand entries and only happens
    /// when the map is full.
    fn make_room(
        &mut self,
        stale: impl Fn(&V) -> bool,
        keep: impl Fn(&V) -> bool,
        age_key: impl Fn(&V) -> Instant,
    ) {
        if self.map.len() < self.cap {
            return;
        }
        self.map.retain(|_, v| !stale(v));
        while self.map.len() >= self.cap {
            let victim = self
                .map
                .iter()
                .min_by_key(|(_, v)| (keep(v), age_key(v)))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// Client addresses are grouped so one host cannot dodge the limit by rotating through
/// its IPv6 /64 (or hide behind an IPv4-mapped form).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug)]
pub(crate) struct Throttle {
    settings: ThrottleSettings,
    names: Bounded<String, Failures>,
    addresses: Bounded<IpAddr, Failures>,
    /// (user, address) pairs with a recent success, and when it was.
    trusted: Bounded<(String, IpAddr), Instant>,
}

impl Throttle {
    pub(crate) fn new(settings: &ThrottleSettings) -> Self {
        Throttle {
            settings: settings.clone(),
            names: Bounded::new(settings.max_tracked),
            addresses: Bounded::new(settings.max_tracked),
            trusted: Bounded::new(settings.max_tracked),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.settings.window_seconds)
    }

    /// `Some(seconds)` if an attempt for `user` from `peer` must be refused now.
    pub(crate) fn check(&self, user: &str, peer: Option<IpAddr>, now: Instant) -> Option<u64> {
        let blocked = |f: Option<&Failures>| {
            f.and_then(|f| f.blocked_until)
                .filter(|until| *until > now)
                .map(|until| until - now)
        };
        let by_address = peer.and_then(|ip| blocked(self.addresses.map.get(&address_key(ip))));
        let by_name = if self.is_trusted(user, peer, now) {
            None
        } else {
            blocked(self.names.map.get(user))
        };
        by_address
            .into_iter()
            .chain(by_name)
            .max()
            .map(|wait| wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            .map(|secs| secs.max(1))
    }

    fn is_trusted(&self, user: &str, peer: Option<IpAddr>, now: Instant) -> bool {
        let Some(ip) = peer else { return false };
        self.trusted
            .map
            .get(&(user.to_owned(), address_key(ip)))
            .is_some_and(|at| now.saturating_duration_since(*at) < self.window())
    }

    pub(crate) fn record_failure(&mut self, user: &str, peer: Option<IpAddr>, now: Instant) {
        let settings = self.settings.clone();
        let window = self.window();
        let stale = move |f: &Failures| {
            now.saturating_duration_since(f.last_failure) >= window
                && f.blocked_until.is_none_or(|u| u <= now)
        };
        let blocked = move |f: &Failures| f.blocked_until.is_some_and(|u| u > now);
        let age = |f: &Failures| f.last_failure;

        if !self.names.map.contains_key(user) {
            self.names.make_room(stale, blocked, age);
        }
        let entry = self.names.map.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            last_failure: now,
            blocked_until: None,
        });
        bump(entry, &settings, now);

        if let Some(ip) = peer {
            let key = address_key(ip);
            if !self.addresses.map.contains_key(&key) {
                self.addresses.make_room(stale, blocked, age);
            }
            let entry = self.addresses.map.entry(key).or_insert(Failures {
                count: 0,
                last_failure: now,
                blocked_until: None,
            });
            bump(entry, &settings, now);
        }
    }

    /// A success clears the name's count (the user proved they know the password) and
    /// trusts the (user, address) pair for a window. The address's count stays: one
    /// valid account must not reset the limit for guessing other accounts from there.
    pub(crate) fn record_success(&mut self, user: &str, peer: Option<IpAddr>, now: Instant) {
        self.names.map.remove(user);
        if let Some(ip) = peer {
            let key = (user.to_owned(), address_key(ip));
            if !self.trusted.map.contains_key(&key) {
                let window = self.window();
                self.trusted.make_room(
                    |at| now.saturating_duration_since(*at) >= window,
                    |_| false,
                    |at| *at,
                );
            }
            self.trusted.map.insert(key, now);
        }
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize, usize) {
        (
            self.names.map.len(),
            self.addresses.map.len(),
            self.trusted.map.len(),
        )
    }
}

/// Counts one failure. The count resets after a quiet `window` (measured from the last
/// failure, so a slow steady guesser never gets a fresh allowance); from `max_failures`
/// on, each failure blocks for `initial_backoff · 2^(count − max_failures)`, capped.
fn bump(f: &mut Failures, s: &ThrottleSettings, now: Instant) {
    let window = Duration::from_secs(s.window_seconds);
    if f.count > 0 && now.saturating_duration_since(f.last_failure) >= window {
        f.count = 0;
        f.blocked_until = None;
    }
    f.count = f.count.saturating_add(1);
    f.last_failure = now;
    if f.count >= s.max_failures.max(1) {
        let doublings = (f.count - s.max_failures.max(1)).min(30);
        let initial = Duration::from_millis(s.initial_backoff_ms);
        let cap = Duration::from_secs(s.max_backoff_seconds);
        let backoff = initial.saturating_mul(1u32 << doublings).min(cap);
        f.blocked_until = Some(now + backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            max_failures: 3,
            window_seconds: 300,
            initial_backoff_ms: 1000,
            max_backoff_seconds: 8,
            max_tracked: 100,
        }
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const OTHER_IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn exponential_backoff_capped() {
        let mut t = Throttle::new(&settings());
        let t0 = Instant::now();
        for _ in 0..2 {
            t.record_failure("bob", None, t0);
            assert_eq!(t.check("bob", None, t0), None);
        }
        let mut now = t0;
        for expected in [1, 2, 4, 8, 8, 8] {
            t.record_failure("bob", None, now);
            assert_eq!(t.check("bob", None, now), Some(expected));
            now += Duration::from_secs(expected);
            assert_eq!(t.check("bob", None, now), None, "free after {expected} s");
        }
        // Other names are unaffected.
        assert_eq!(t.check("alice", None, now), None);
    }

    #[test]
    fn window_resets_and_success_clears_name() {
        let mut t = Throttle::new(&settings());
        let t0 = Instant::now();
        for _ in 0..3 {
            t.record_failure("bob", None, t0);
        }
        assert!(t.check("bob", None, t0).is_some());
        let later = t0 + Duration::from_secs(301);
        assert_eq!(t.check("bob", None, later), None);
        t.record_failure("bob", None, later);
        assert_eq!(t.check("bob", None, later), None, "count restarted");
        t.record_failure("bob", None, later);
        t.record_success("bob", None, later);
        t.record_failure("bob", None, later);
        t.record_failure("bob", None, later);
        assert_eq!(
            t.check("bob", None, later),
            None,
            "success cleared the count"
        );
    }

    #[test]
    fn per_address_across_names() {
        let mut t = Throttle::new(&settings());
        let now = Instant::now();
        t.record_failure("a", IP, now);
        t.record_failure("b", IP, now);
        t.record_failure("c", IP, now);
        assert_eq!(t.check("d", IP, now), Some(1));
        assert_eq!(t.check("d", OTHER_IP, now), None);
        // IPv6 addresses in one /64 share a counter; IPv4-mapped counts as IPv4.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        t.record_failure("x", v6("2001:db8::1"), now);
        t.record_failure("y", v6("2001:db8::2"), now);
        t.record_failure("z", v6("2001:db8::ffff:3"), now);
        assert!(t.check("w", v6("2001:db8::4"), now).is_some());
        assert!(t.check("w", v6("2001:db8:0:1::4"), now).is_none());
        assert!(t.check("w", v6("::ffff:10.0.0.1"), now).is_some());
    }

    #[test]
    fn trusted_address_skips_name_lock_only() {
        let mut t = Throttle::new(&settings());
        let now = Instant::now();
        t.record_success("bob", IP, now);
        for _ in 0..5 {
            t.record_failure("bob", OTHER_IP, now);
        }
        assert!(t.check("bob", OTHER_IP, now).is_some());
        assert!(t.check("bob", None, now).is_some());
        assert_eq!(
            t.check("bob", IP, now),
            None,
            "working client not locked out"
        );
        // The trust expires with the window.
        let later = now + Duration::from_secs(299);
        t.record_failure("bob", OTHER_IP, later);
        assert!(t.check("bob", IP, later).is_none());
        let much_later = now + Duration::from_secs(301);
        t.record_failure("bob", OTHER_IP, much_later);
        t.record_failure("bob", OTHER_IP, much_later);
        t.record_failure("bob", OTHER_IP, much_later);
        assert!(t.check("bob", IP, much_later).is_some());
    }

    #[test]
    fn maps_stay_bounded_and_keep_blocked_entries() {
        let mut s = settings();
        s.max_tracked = 10;
        let mut t = Throttle::new(&s);
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure("victim", None, now);
        }
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            t.record_failure(
                &format!("spray{i}"),
                Some(ip),
                now + Duration::from_millis(i.into()),
            );
            t.record_success(&format!("ok{i}"), Some(ip), now);
        }
        let (names, addresses, trusted) = t.tracked();
        assert!(
            names <= 10 && addresses <= 10 && trusted <= 10,
            "{:?}",
            t.tracked()
        );
        assert!(
            t.check("victim", None, now).is_some(),
            "blocked entry survived eviction"
        );
    }
}
