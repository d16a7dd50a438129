//! Stopping chaos at once: `[abort]` thresholds, a kill-switch file and a kill-switch HTTP
//! endpoint. Each trips one [`AbortSwitch`], which cancels the run's stop token (the
//! scheduler clears every fault, the calls end) and keeps the first reason given.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::journal::StoppedBy;
use crate::scenario::AbortConditions;

/// How often the kill-switch file is looked for.
const KILL_SWITCH_POLL: Duration = Duration::from_millis(500);

/// Trips once; the first reason is the one the run reports.
#[derive(Debug, Clone)]
pub struct AbortSwitch {
    token: CancellationToken,
    reason: Arc<Mutex<Option<(StoppedBy, String)>>>,
}

impl AbortSwitch {
    /// Cancels `token` when tripped.
    pub fn new(token: CancellationToken) -> Self {
        AbortSwitch {
            token,
            reason: Arc::new(Mutex::new(None)),
        }
    }

    /// Stops the run: `by` what (the kill switch, or an abort condition on the fleet's
    /// calls, which the verdict treats differently), and why.
    pub fn trip(&self, by: StoppedBy, reason: impl Into<String>) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some((by, reason.into()));
        }
        drop(slot);
        self.token.cancel();
    }

    /// What tripped it and why, if it did.
    pub fn reason(&self) -> Option<(StoppedBy, String)> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Call success over a sliding window, against `[abort] call_success_below`.
#[derive(Debug)]
pub struct SuccessWatch {
    below_pct: f64,
    over: Duration,
    min_calls: u64,
    /// (when, completed so far, graded so far), oldest first, spanning about `over`.
    samples: VecDeque<(Instant, u64, u64)>,
}

impl SuccessWatch {
    /// None when the scenario sets no success threshold.
    pub fn new(conditions: &AbortConditions) -> Option<Self> {
        Some(SuccessWatch {
            below_pct: conditions.call_success_below_pct?,
            over: conditions.over,
            min_calls: u64::from(conditions.min_calls),
            samples: VecDeque::new(),
        })
    }

    /// Takes the running totals; the reason to abort if the success rate over the last
    /// `over` (once that much time has passed and `min_calls` calls ended in it) is below
    /// the threshold.
    pub fn observe(&mut self, now: Instant, completed: u64, graded: u64) -> Option<String> {
        self.samples.push_back((now, completed, graded));
        // Keep one sample at or before the window's start, to measure from.
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= self.over
        {
            self.samples.pop_front();
        }
        let &(since, completed_then, graded_then) = self.samples.front()?;
        if now.saturating_duration_since(since) < self.over {
            return None;
        }
        let graded = graded.saturating_sub(graded_then);
        if graded < self.min_calls {
            return None;
        }
        let pct = 100.0 * completed.saturating_sub(completed_then) as f64 / graded as f64;
        (pct < self.below_pct).then(|| {
            format!(
                "call success was {pct:.1}% over the last {} ({graded} calls), below the abort threshold of {}%",
                humantime::format_duration(self.over),
                self.below_pct
            )
        })
    }
}

/// Trips `switch` when `file` appears; ends with `stop`.
pub async fn watch_kill_switch_file(file: PathBuf, switch: AbortSwitch, stop: CancellationToken) {
    loop {
        if tokio::fs::try_exists(&file).await.unwrap_or(false) {
            switch.trip(
                StoppedBy::KillSwitch,
                format!("kill switch: {} appeared", file.display()),
            );
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(KILL_SWITCH_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Serves `POST /abort` on `listen` until `stop`; a request trips `switch`. Returns the
/// bound address.
pub async fn serve_kill_switch(
    listen: SocketAddr,
    switch: AbortSwitch,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let router = Router::new().route(
        "/abort",
        post(move || {
            let switch = switch.clone();
            async move {
                switch.trip(
                    StoppedBy::KillSwitch,
                    format!("kill switch: POST /abort on {address}"),
                );
                "aborting: faults are being cleared and the run is ending\n"
            }
        }),
    );
    tokio::spawn(async move {
        crate::http_serve::serve(listener, router, stop).await;
    });
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(below: f64, over_s: u64, min_calls: u32) -> SuccessWatch {
        SuccessWatch::new(&AbortConditions {
            call_success_below_pct: Some(below),
            over: Duration::from_secs(over_s),
            min_calls,
            ..AbortConditions::default()
        })
        .unwrap()
    }

    #[test]
    fn success_below_the_threshold_over_the_window_trips() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut watch = watch(50.0, 60, 10);
        assert_eq!(watch.observe(at(0), 0, 0), None);
        // 30 s in, everything failing, but the window is not full yet.
        assert_eq!(watch.observe(at(30), 0, 20), None);
        // 60 s: 5 of 40 completed = 12.5%.
        let reason = watch.observe(at(60), 5, 40).expect("trips");
        assert!(reason.contains("12.5%"), "{reason}");
        assert!(reason.contains("40 calls"), "{reason}");
    }

    #[test]
    fn the_window_slides_and_needs_enough_calls() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut watch = watch(50.0, 60, 10);
        // A bad first minute...
        watch.observe(at(0), 0, 0);
        watch.observe(at(60), 0, 9); // too few calls to judge
        assert_eq!(watch.observe(at(61), 0, 9), None);
        // ...then a good one: the old failures slide out.
        for s in 62..=130 {
            watch.observe(at(s), s - 61, s - 61 + 9);
        }
        assert_eq!(watch.observe(at(131), 70, 79), None);
        assert!(
            watch.samples.len() <= 62,
            "bounded: {}",
            watch.samples.len()
        );
    }

    #[test]
    fn no_threshold_no_watch_and_the_first_reason_wins() {
        assert!(SuccessWatch::new(&AbortConditions::default()).is_none());
        let token = CancellationToken::new();
        let switch = AbortSwitch::new(token.clone());
        switch.trip(StoppedBy::KillSwitch, "first");
        switch.trip(StoppedBy::AbortCondition, "second");
        assert!(token.is_cancelled());
        assert_eq!(
            switch.reason(),
            Some((StoppedBy::KillSwitch, "first".to_owned()))
        );
    }

    #[tokio::test]
    async fn the_kill_switch_file_and_endpoint_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ABORT");
        let token = CancellationToken::new();
        let switch = AbortSwitch::new(token.clone());
        let watcher = tokio::spawn(watch_kill_switch_file(
            file.clone(),
            switch.clone(),
            CancellationToken::new(),
        ));
        std::fs::write(&file, b"").unwrap();
        watcher.await.unwrap();
        assert!(token.is_cancelled());
        let (by, reason) = switch.reason().unwrap();
        assert_eq!(by, StoppedBy::KillSwitch);
        assert!(reason.contains("ABORT"), "{reason}");

        let token = CancellationToken::new();
        let switch = AbortSwitch::new(token.clone());
        let stop = CancellationToken::new();
        let address =
            serve_kill_switch("127.0.0.1:0".parse().unwrap(), switch.clone(), stop.clone())
                .await
                .unwrap();
        let response = reqwest::Client::new()
            .post(format!("http://{address}/abort"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        token.cancelled().await;
        assert!(switch.reason().unwrap().1.contains("POST /abort"));
        stop.cancel();
    }
}
