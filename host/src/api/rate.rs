//! Rate limits on `POST /start`, per token and per client address, so that
//! no single caller can make a host spend its time booting VMs.
//!
//! Each limit is a token bucket (GCRA, from the `governor` crate) of
//! `n` starts per minute with bursts of up to `n`. Limits are per host: a
//! fleet of `k` hosts behind a load balancer admits up to `k` times as
//! much, which the fleet-wide `session.max_sessions` caps in the end.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;

/// Keys a limiter forgets only when it holds more than this many, so its
/// memory stays bounded however many callers come and go.
const RETAIN_ABOVE: usize = 10_000;

/// Which limit a refused start ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The caller's token made too many starts.
    Token(Duration),
    /// The client address made too many starts.
    Address(Duration),
}

impl Exceeded {
    /// How long until the next start would be let through.
    pub fn retry_after(self) -> Duration {
        match self {
            Exceeded::Token(wait) | Exceeded::Address(wait) => wait,
        }
    }
}

/// The `/start` limits of one host.
pub struct StartLimiter {
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    exempt_loopback: bool,
    clock: DefaultClock,
}

fn per_minute<K: std::hash::Hash + Eq + Clone>(n: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl StartLimiter {
    /// The limits in `config` (`0` turns one off).
    pub fn new(config: &LimitsConfig) -> StartLimiter {
        StartLimiter {
            per_token: per_minute(config.starts_per_minute_per_token),
            per_address: per_minute(config.starts_per_minute_per_address),
            exempt_loopback: config.exempt_loopback,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one start by `token` (a caller's limit key; `None` for callers
    /// not limited per token) from `address`, or says which limit it
    /// exceeds. The address is checked first, so that one address cannot
    /// escape its limit by presenting many tokens.
    pub fn check(&self, token: Option<&str>, address: Option<IpAddr>) -> Result<(), Exceeded> {
        let address = address.filter(|ip| !(self.exempt_loopback && ip.is_loopback()));
        if let (Some(limiter), Some(address)) = (&self.per_address, address) {
            Self::forget_old(limiter);
            limiter
                .check_key(&address)
                .map_err(|wait| Exceeded::Address(wait.wait_time_from(self.clock.now())))?;
        }
        if let (Some(limiter), Some(token)) = (&self.per_token, token) {
            Self::forget_old(limiter);
            limiter
                .check_key(&token.to_string())
                .map_err(|wait| Exceeded::Token(wait.wait_time_from(self.clock.now())))?;
        }
        Ok(())
    }

    fn forget_old<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
        if limiter.len() > RETAIN_ABOVE {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_is_refused_with_a_wait() {
        let limiter = StartLimiter::new(&LimitsConfig {
            starts_per_minute_per_token: 3,
            starts_per_minute_per_address: 100,
            exempt_loopback: true,
            ..LimitsConfig::default()
        });
        let address = Some("127.0.0.1".parse().unwrap());
        for _ in 0..3 {
            limiter.check(Some("user:a"), address).unwrap();
        }
        let refused = limiter.check(Some("user:a"), address).unwrap_err();
        assert!(matches!(refused, Exceeded::Token(_)));
        assert!(refused.retry_after() > Duration::ZERO);
        assert!(refused.retry_after() <= Duration::from_secs(20));
        // Another token is not affected.
        limiter.check(Some("user:b"), address).unwrap();
    }

    #[test]
    fn one_address_cannot_escape_its_limit_with_many_tokens() {
        let limiter = StartLimiter::new(&LimitsConfig {
            starts_per_minute_per_token: 100,
            starts_per_minute_per_address: 2,
            exempt_loopback: true,
            ..LimitsConfig::default()
        });
        let address = Some("192.0.2.7".parse().unwrap());
        limiter.check(Some("user:a"), address).unwrap();
        limiter.check(Some("user:b"), address).unwrap();
        assert!(matches!(
            limiter.check(Some("user:c"), address),
            Err(Exceeded::Address(_))
        ));
        limiter
            .check(Some("user:c"), Some("192.0.2.8".parse().unwrap()))
            .unwrap();
        // Loopback clients (a local reverse proxy) are not limited by address.
        for _ in 0..10 {
            limiter
                .check(None, Some("127.0.0.1".parse().unwrap()))
                .unwrap();
        }
    }

    #[test]
    fn a_zero_limit_is_off() {
        let limiter = StartLimiter::new(&LimitsConfig {
            starts_per_minute_per_token: 0,
            starts_per_minute_per_address: 0,
            exempt_loopback: false,
            ..LimitsConfig::default()
        });
        for _ in 0..1000 {
            limiter.check(Some("user:a"), None).unwrap();
        }
    }
}
