//! Per-IP rate limits for the endpoints that guess passwords or create accounts.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{RateLimit, RateLimits};
use crate::error::{Error, Result};

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Login,
    Registration,
}

/// One keyed token bucket per limit.
pub struct RateLimiters {
    login: DefaultKeyedRateLimiter<IpAddr>,
    registration: DefaultKeyedRateLimiter<IpAddr>,
}

fn limiter(limit: RateLimit) -> DefaultKeyedRateLimiter<IpAddr> {
    let period = Duration::from_secs_f64(1.0 / limit.per_second);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::keyed(quota)
}

impl RateLimiters {
    pub fn new(config: &RateLimits) -> RateLimiters {
        RateLimiters {
            login: limiter(config.login),
            registration: limiter(config.registration),
        }
    }

    /// Counts one request from `ip`; `M_LIMIT_EXCEEDED` when over the limit.
    pub fn check(&self, limit: Limit, ip: IpAddr) -> Result<()> {
        let limiter = match limit {
            Limit::Login => &self.login,
            Limit::Registration => &self.registration,
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::LimitExceeded {
                retry_after_ms: wait.as_millis().max(1) as u64,
            }
        })?;
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}
