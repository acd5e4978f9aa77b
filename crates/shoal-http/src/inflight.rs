//! A budget for request bodies held in memory at once, over every connection: a body takes
//! its share before it is read (all of its `Content-Length`, or chunk by chunk when it has
//! none) and gives it back when the request is done, so many large bodies at once wait, and
//! then fail with a `503`, instead of taking the process's memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

/// The budget is counted in units of this many bytes (a semaphore counts in `u32`s).
const UNIT: usize = 1024;

/// Bytes of request bodies that may be held at once.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    units: Arc<Semaphore>,
    total_units: usize,
    limit_bytes: usize,
    wait: Duration,
}

/// A share of the budget, given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Share {
    permits: Vec<OwnedSemaphorePermit>,
    units: usize,
}

impl BodyBudget {
    /// A budget of `limit_bytes`, whose takers wait up to `wait` for their share.
    pub(crate) fn new(limit_bytes: usize, wait: Duration) -> BodyBudget {
        let total_units = limit_bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            units: Arc::new(Semaphore::new(total_units)),
            total_units,
            limit_bytes,
            wait,
        }
    }

    /// Adds to `share` what `bytes` more bytes of a body need, waiting for it up to the
    /// budget's wait. A body larger than the whole budget is refused at once.
    pub(crate) async fn take(&self, share: &mut Share, bytes: usize) -> Result<(), ApiError> {
        let needed = bytes.div_ceil(UNIT);
        if share.units + needed > self.total_units {
            return Err(self.busy());
        }
        let mut left = needed;
        while left > 0 {
            let chunk = left.min(u32::MAX as usize) as u32;
            let permit =
                tokio::time::timeout(self.wait, self.units.clone().acquire_many_owned(chunk))
                    .await
                    .map_err(|_| self.busy())?
                    .map_err(|_| self.busy())?;
            share.permits.push(permit);
            share.units += chunk as usize;
            left -= chunk as usize;
        }
        Ok(())
    }

    /// Bytes of bodies held now.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        (self.total_units - self.units.available_permits()) * UNIT
    }

    fn busy(&self) -> ApiError {
        ApiError::Busy(format!(
            "too many request bodies in flight (http-max-inflight-bytes is {} bytes); try again",
            self.limit_bytes
        ))
    }
}

impl Share {
    /// Bytes this share covers.
    pub(crate) fn bytes(&self) -> usize {
        self.units * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bodies_over_the_budget_wait_then_are_refused_and_shares_come_back() {
        let budget = BodyBudget::new(10 * UNIT, Duration::from_secs(1));
        let mut first = Share::default();
        budget.take(&mut first, 6 * UNIT).await.unwrap();
        assert_eq!(budget.held_bytes(), 6 * UNIT);
        let mut second = Share::default();
        let refused = budget.take(&mut second, 6 * UNIT).await;
        assert!(matches!(refused, Err(ApiError::Busy(_))), "{refused:?}");
        // More than the whole budget is refused without waiting.
        let started = tokio::time::Instant::now();
        let mut huge = Share::default();
        assert!(budget.take(&mut huge, 11 * UNIT).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(first);
        budget.take(&mut second, 6 * UNIT).await.unwrap();
        assert_eq!(second.bytes(), 6 * UNIT);
        drop(second);
        assert_eq!(budget.held_bytes(), 0);
    }
}
