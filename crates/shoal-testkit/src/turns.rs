//! Tests that start clusters take turns: two clusters at once on a 2-core CI machine make
//! both slow enough to miss their timing assertions.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `body` once every other test of this process that called `run_alone` before it has
/// finished, fails the test if `body` takes longer than `limit`, and prints how long it took.
pub async fn run_alone(name: &str, limit: Duration, body: impl Future<Output = ()>) {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = TURN.lock().await;
    let started = Instant::now();
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("{name} ran longer than {limit:?}");
    }
    eprintln!("{name}: passed in {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_never_overlap() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(async move {
                    run_alone(&format!("body {i}"), Duration::from_secs(5), async {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    #[should_panic(expected = "ran longer than")]
    async fn a_body_past_its_limit_fails() {
        run_alone("slow", Duration::from_millis(1), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
    }
}
