//! A sliding one-hour call budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{Error, Result};

const WINDOW: Duration = Duration::from_secs(3600);

/// Allows at most `limit` calls in any sliding hour.
#[derive(Debug)]
pub struct HourlyBudget {
    limit: u32,
    calls: VecDeque<Instant>,
}

impl HourlyBudget {
    /// A budget of `limit` calls per hour (0 allows none).
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            calls: VecDeque::new(),
        }
    }

    /// Spends one call at `now`.
    ///
    /// # Errors
    ///
    /// [`Error::BudgetExhausted`] when `limit` calls happened in the hour before `now`.
    pub fn acquire(&mut self, now: Instant) -> Result<()> {
        while let Some(first) = self.calls.front() {
            if now.saturating_duration_since(*first) >= WINDOW {
                self.calls.pop_front();
            } else {
                break;
            }
        }
        if self.calls.len() >= self.limit as usize {
            let retry_in_secs = self
                .calls
                .front()
                .map(|first| {
                    (WINDOW.saturating_sub(now.saturating_duration_since(*first))).as_secs()
                })
                .unwrap_or(WINDOW.as_secs());
            return Err(Error::BudgetExhausted {
                limit: self.limit,
                retry_in_secs,
            });
        }
        self.calls.push_back(now);
        Ok(())
    }

    /// Calls spent in the hour before `now`.
    pub fn spent(&self, now: Instant) -> usize {
        self.calls
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < WINDOW)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_limit_calls_per_sliding_hour() {
        let t0 = Instant::now();
        let mut b = HourlyBudget::new(2);
        b.acquire(t0).expect("first");
        b.acquire(t0 + Duration::from_secs(600)).expect("second");
        let err = b
            .acquire(t0 + Duration::from_secs(1200))
            .expect_err("third");
        assert!(
            matches!(
                err,
                Error::BudgetExhausted {
                    limit: 2,
                    retry_in_secs: 2400
                }
            ),
            "{err:?}"
        );
        // The first call leaves the window after an hour.
        b.acquire(t0 + Duration::from_secs(3600))
            .expect("after the hour");
        assert_eq!(b.spent(t0 + Duration::from_secs(3600)), 2);
    }

    #[test]
    fn zero_allows_nothing() {
        let mut b = HourlyBudget::new(0);
        assert!(b.acquire(Instant::now()).is_err());
    }
}
