//! Rate limits: per IP for the endpoints that guess passwords or create accounts, per user for
//! media uploads and for the room events sent through the client API.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use ruma::{OwnedUserId, UserId};

use crate::config::{self, RateLimit, RateLimits};
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
    media_upload: DefaultKeyedRateLimiter<OwnedUserId>,
    message: DefaultKeyedRateLimiter<OwnedUserId>,
}

fn limiter<K: Hash + Eq + Clone>(limit: RateLimit) -> DefaultKeyedRateLimiter<K> {
    let period = Duration::from_secs_f64(1.0 / limit.per_second);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::keyed(quota)
}

impl RateLimiters {
    pub fn new(config: &RateLimits, media: &config::Media) -> RateLimiters {
        RateLimiters {
            login: limiter(config.login),
            registration: limiter(config.registration),
            media_upload: limiter(media.upload_rate),
            message: limiter(config.message),
        }
    }

    /// Counts one request from `ip`; `M_LIMIT_EXCEEDED` when over the limit.
    pub fn check(&self, limit: Limit, ip: IpAddr) -> Result<()> {
        let limiter = match limit {
            Limit::Login => &self.login,
            Limit::Registration => &self.registration,
        };
        take(limiter, &ip)
    }

    /// Counts one media upload by `user`; `M_LIMIT_EXCEEDED` when over the limit.
    pub fn check_upload(&self, user: &UserId) -> Result<()> {
        take(&self.media_upload, &user.to_owned())
    }

    /// Counts one room event sent in `session`; `M_LIMIT_EXCEEDED` when over the limit (never
    /// for an appservice registered with `rate_limited: false`).
    pub fn check_message(&self, session: &crate::service::devices::Session) -> Result<()> {
        if !session.rate_limited() {
            return Ok(());
        }
        take(&self.message, &session.user_id)
    }
}

/// Takes one token of `key`'s bucket.
fn take<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<()> {
    limiter.check_key(key).map_err(|not_until| {
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
