//! Restart strategies (`restart-strategy.type`): whether, and after how long, a failed job
//! restarts from its latest checkpoint.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use eddy_core::config::{Configuration, RestartStrategyType, options};

use crate::error::Result;

/// Decides what happens after a failure.
#[derive(Debug)]
pub enum RestartStrategy {
    /// Never restart.
    NoRestart,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Pause before each.
        delay: Duration,
        /// Restarts so far.
        used: u32,
    },
    /// Restart unless more than `max_failures` failures happened within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The interval.
        interval: Duration,
        /// Pause before each restart.
        delay: Duration,
        /// Recent failures.
        failures: VecDeque<Instant>,
    },
    /// Pauses that grow by `multiplier` from `initial` up to `max`, with random jitter, reset
    /// after a run of `reset_threshold` without failure (Flink 2's default).
    ExponentialDelay {
        /// First pause.
        initial: Duration,
        /// Longest pause.
        max: Duration,
        /// Growth factor.
        multiplier: f64,
        /// A run this long resets the pause.
        reset_threshold: Duration,
        /// Jitter as a fraction of the pause.
        jitter: f64,
        /// Restarts allowed before a reset.
        attempts: u32,
        /// The next pause.
        current: Duration,
        /// The last failure.
        last_failure: Option<Instant>,
        /// Restarts since the last reset.
        used: u32,
    },
}

impl RestartStrategy {
    /// The strategy a job's configuration asks for. Without `restart-strategy.type`, jobs that
    /// checkpoint use exponential delay and others do not restart (as in Flink 2).
    pub fn from_config(conf: &Configuration, checkpointing: bool) -> Result<Self> {
        let kind = match conf.get_optional(&options::RESTART_STRATEGY)? {
            Some(k) => k,
            None if checkpointing => RestartStrategyType::ExponentialDelay,
            None => RestartStrategyType::None,
        };
        Ok(match kind {
            RestartStrategyType::None => RestartStrategy::NoRestart,
            RestartStrategyType::FixedDelay => RestartStrategy::FixedDelay {
                attempts: conf.get(&options::FIXED_DELAY_ATTEMPTS)?,
                delay: conf.get(&options::FIXED_DELAY_DELAY)?,
                used: 0,
            },
            RestartStrategyType::FailureRate => RestartStrategy::FailureRate {
                max_failures: conf.get(&options::FAILURE_RATE_MAX_FAILURES)?,
                interval: conf.get(&options::FAILURE_RATE_INTERVAL)?,
                delay: conf.get(&options::FAILURE_RATE_DELAY)?,
                failures: VecDeque::new(),
            },
            RestartStrategyType::ExponentialDelay => {
                let initial = conf.get(&options::EXP_DELAY_INITIAL)?;
                RestartStrategy::ExponentialDelay {
                    initial,
                    max: conf.get(&options::EXP_DELAY_MAX)?,
                    multiplier: conf.get(&options::EXP_DELAY_MULTIPLIER)?.max(1.0),
                    reset_threshold: conf.get(&options::EXP_DELAY_RESET_THRESHOLD)?,
                    jitter: conf.get(&options::EXP_DELAY_JITTER)?.clamp(0.0, 1.0),
                    attempts: conf.get(&options::EXP_DELAY_ATTEMPTS)?,
                    current: initial,
                    last_failure: None,
                    used: 0,
                }
            }
        })
    }

    /// Records a failure at `now`; returns the pause before restarting, or `None` if the job
    /// must fail.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        match self {
            RestartStrategy::NoRestart => None,
            RestartStrategy::FixedDelay {
                attempts,
                delay,
                used,
            } => {
                if *used >= *attempts {
                    return None;
                }
                *used += 1;
                Some(*delay)
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
                failures,
            } => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > *interval)
                {
                    failures.pop_front();
                }
                if failures.len() as u32 > *max_failures {
                    return None;
                }
                Some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_threshold,
                jitter,
                attempts,
                current,
                last_failure,
                used,
            } => {
                if last_failure.is_some_and(|t| now.duration_since(t) >= *reset_threshold) {
                    *current = *initial;
                    *used = 0;
                }
                *last_failure = Some(now);
                if *used >= *attempts {
                    return None;
                }
                *used += 1;
                let base = (*current).min(*max);
                let spread = base.as_secs_f64() * *jitter;
                let pause = if spread > 0.0 {
                    base.as_secs_f64() + rand::random_range(-spread..=spread)
                } else {
                    base.as_secs_f64()
                };
                *current = Duration::from_secs_f64(
                    (base.as_secs_f64() * *multiplier).min(max.as_secs_f64()),
                );
                Some(Duration::from_secs_f64(pause.max(0.0)))
            }
        }
    }

    /// The strategy's name, as in `restart-strategy.type`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartStrategy::NoRestart => "none",
            RestartStrategy::FixedDelay { .. } => "fixed-delay",
            RestartStrategy::FailureRate { .. } => "failure-rate",
            RestartStrategy::ExponentialDelay { .. } => "exponential-delay",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Configuration {
        let mut c = Configuration::new();
        for (k, v) in pairs {
            c.set_string(*k, *v);
        }
        c
    }

    #[test]
    fn defaults_follow_checkpointing() {
        let c = Configuration::new();
        assert_eq!(
            RestartStrategy::from_config(&c, false).unwrap().name(),
            "none"
        );
        assert_eq!(
            RestartStrategy::from_config(&c, true).unwrap().name(),
            "exponential-delay"
        );
    }

    #[test]
    fn fixed_delay_counts_attempts() {
        let mut s = RestartStrategy::from_config(
            &conf(&[
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "2"),
                ("restart-strategy.fixed-delay.delay", "10 ms"),
            ]),
            false,
        )
        .unwrap();
        let now = Instant::now();
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(10)));
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(10)));
        assert_eq!(s.on_failure(now), None);
    }

    #[test]
    fn failure_rate_forgets_old_failures() {
        let mut s = RestartStrategy::from_config(
            &conf(&[
                ("restart-strategy.type", "failure-rate"),
                (
                    "restart-strategy.failure-rate.max-failures-per-interval",
                    "2",
                ),
                (
                    "restart-strategy.failure-rate.failure-rate-interval",
                    "1 min",
                ),
                ("restart-strategy.failure-rate.delay", "0 ms"),
            ]),
            false,
        )
        .unwrap();
        let t0 = Instant::now();
        assert!(s.on_failure(t0).is_some());
        assert!(s.on_failure(t0 + Duration::from_secs(1)).is_some());
        assert!(s.on_failure(t0 + Duration::from_secs(2)).is_none());
        assert!(s.on_failure(t0 + Duration::from_secs(120)).is_some());
    }

    #[test]
    fn exponential_delay_grows_caps_and_resets() {
        let mut s = RestartStrategy::from_config(
            &conf(&[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.jitter-factor", "0"),
                ("restart-strategy.exponential-delay.max-backoff", "3 s"),
            ]),
            true,
        )
        .unwrap();
        let t0 = Instant::now();
        let secs = |d: Option<Duration>| d.unwrap().as_secs_f64();
        assert_eq!(secs(s.on_failure(t0)), 1.0);
        assert_eq!(secs(s.on_failure(t0)), 1.5);
        assert_eq!(secs(s.on_failure(t0)), 2.25);
        assert_eq!(secs(s.on_failure(t0)), 3.0);
        assert_eq!(secs(s.on_failure(t0)), 3.0);
        // An hour without failure resets the backoff.
        assert_eq!(secs(s.on_failure(t0 + Duration::from_secs(3600))), 1.0);

        let mut j = RestartStrategy::from_config(&conf(&[]), true).unwrap();
        let d = secs(j.on_failure(t0));
        assert!((0.9..=1.1).contains(&d), "jitter of 10% around 1 s: {d}");
    }
}
