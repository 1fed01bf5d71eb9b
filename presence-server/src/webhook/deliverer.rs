//! One webhook's deliveries: read the feed after the delivered cursor,
//! filter, batch, sign, POST, and move the cursor only on a 2xx. One batch
//! is in flight at a time and the next starts after the last acknowledged
//! event, so each user's events arrive in `v` order and event N+1 never
//! before N was acknowledged. A failure retries the same events (re-read,
//! so the batch is the same while they are retained) after a jittered,
//! capped exponential backoff.
//!
//! Runs on the node holding the tenant's lease (`supervisor`), until told to
//! stop, the webhook is deleted or re-created, or the node stops. Progress
//! is saved after every attempt, so a takeover goes on from the last
//! acknowledged cursor; what was in flight when a deliverer died is sent
//! again, with the same event ids.

use std::sync::Arc;
use std::time::Duration;

use presence_protocol::{DeliveryError, DeliveryStatus, Event, WebhookBatch};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::directory::WebhookRecord;
use crate::hub::Hub;
use crate::store::{EventRead, WebhookProgress};
use crate::webhook::{backoff, sign, target};

/// Events read from the feed at once: enough to fill a batch past events
/// the filter skips.
const READ_MAX: usize = 1_000;
/// How often an idle deliverer looks at the feed and its record even when
/// nothing woke it (a missed wake-up, a changed URL during a backoff).
const RECHECK: Duration = Duration::from_secs(1);
/// Progress over skipped (filtered-out) events is saved at most this often.
const SAVE_SKIPS_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Deliverer {
    pub hub: Arc<Hub>,
    pub client: reqwest::Client,
    pub tenant: String,
    pub id: String,
    pub generation: String,
    pub stop: CancellationToken,
}

/// Why one attempt failed.
struct Failed {
    status: Option<u16>,
    message: String,
}

impl Deliverer {
    fn record(&self) -> Option<WebhookRecord> {
        self.hub
            .read(&self.tenant, |t| t.dir.webhooks.get(&self.id).cloned())
            .ok()
            .flatten()
            .filter(|w| w.generation == self.generation)
    }

    pub(crate) async fn run(self) {
        let Some(rec) = self.record() else { return };
        let mut progress = match self
            .hub
            .store()
            .webhook_progress(&self.tenant, &self.id)
            .await
        {
            Ok(Some(p)) if p.generation == self.generation => p,
            Ok(_) => self.fresh(&rec),
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, webhook = %self.id, error = %e,
                    "cannot read the webhook's progress; starting where it was created");
                self.fresh(&rec)
            }
        };
        let metrics = &self.hub.metrics;
        let mut reported_pending = 0i64;
        let mut first_seen: Option<Instant> = None;
        let mut last_skip_save = Instant::now();
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let Some(rec) = self.record() else { break };
            if rec.cleared_at > progress.cleared_at {
                progress.cleared_at = rec.cleared_at;
                if progress.state.status == DeliveryStatus::Failing {
                    progress.state.status = DeliveryStatus::Ok;
                }
                self.save(&mut progress).await;
            }
            let Ok(mut rx) = self.hub.read(&self.tenant, |t| t.feed_watch()) else {
                break;
            };
            let cursor = progress.state.delivered_cursor;
            let events = match self
                .hub
                .store()
                .read_events(&self.tenant, cursor, READ_MAX)
                .await
            {
                Ok(EventRead::Events(e)) => e,
                Ok(EventRead::Gone { oldest }) => {
                    // Undelivered events were trimmed: the consumer must
                    // resynchronise; deliveries go on after the gap.
                    progress.state.status = DeliveryStatus::Failing;
                    progress.state.last_error = Some(DeliveryError {
                        at: self.hub.now_ms(),
                        status: None,
                        message: format!(
                            "events after cursor {cursor} were past the retention before they \
                             were delivered; resynchronise, then PUT the webhook to clear this"
                        ),
                    });
                    progress.state.delivered_cursor = oldest.saturating_sub(1);
                    self.save(&mut progress).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, webhook = %self.id, error = %e,
                        "cannot read the feed");
                    self.pause(RECHECK).await;
                    continue;
                }
            };
            let matching: Vec<&Event> = events
                .iter()
                .filter(|e| rec.matches(e.status, e.reason))
                .collect();
            let pending = matching.len() as i64;
            metrics.webhook_pending.add(pending - reported_pending);
            reported_pending = pending;
            progress.state.pending = matching.len() as u64;
            progress.state.oldest_pending_age_ms = matching
                .first()
                .map_or(0, |e| self.hub.now_ms().saturating_sub(e.at));
            let Some(last) = events.last() else {
                first_seen = None;
                self.wait(&mut rx, None).await;
                continue;
            };
            if matching.is_empty() {
                progress.state.delivered_cursor = last.cursor;
                if last_skip_save.elapsed() >= SAVE_SKIPS_EVERY {
                    last_skip_save = Instant::now();
                    self.save(&mut progress).await;
                }
                continue;
            }
            let batch_max = self.hub.config.webhooks.batch_max;
            let seen = *first_seen.get_or_insert_with(Instant::now);
            let due = seen + self.hub.config.webhooks.batch_wait;
            if matching.len() < batch_max && events.len() < READ_MAX && Instant::now() < due {
                self.wait(&mut rx, Some(due)).await;
                continue;
            }
            // Every batch of what was read, one after the other (they all
            // waited already); a failure goes back to re-read and retry.
            let mut sent = 0;
            let mut stopped = false;
            while sent < matching.len() {
                let rest = &matching[sent..];
                let batch: Vec<Event> = rest.iter().take(batch_max).map(|e| (*e).clone()).collect();
                // The batch covers every event up to its last one; when it
                // takes every match left, the skipped events after it too.
                let end = if rest.len() > batch_max {
                    batch.last().map_or(cursor, |e| e.cursor)
                } else {
                    last.cursor
                };
                match self.post(&rec, &batch).await {
                    Ok(()) => {
                        metrics.webhook_deliveries.with_label_values(&["ok"]).inc();
                        metrics.webhook_events.inc_by(batch.len() as u64);
                        metrics.webhook_pending.sub(batch.len() as i64);
                        reported_pending -= batch.len() as i64;
                        sent += batch.len();
                        let s = &mut progress.state;
                        s.delivered_cursor = end;
                        s.pending = s.pending.saturating_sub(batch.len() as u64);
                        s.oldest_pending_age_ms = matching
                            .get(sent)
                            .map_or(0, |e| self.hub.now_ms().saturating_sub(e.at));
                        s.last_success_at = Some(self.hub.now_ms());
                        s.attempts = 0;
                        if s.status == DeliveryStatus::Retrying {
                            s.status = DeliveryStatus::Ok;
                        }
                        self.save(&mut progress).await;
                        if self.stop.is_cancelled() {
                            stopped = true;
                            break;
                        }
                    }
                    Err(Some(f)) => {
                        let label = if f.status.is_some() {
                            "http_error"
                        } else {
                            "network_error"
                        };
                        metrics.webhook_deliveries.with_label_values(&[label]).inc();
                        let s = &mut progress.state;
                        s.attempts = s.attempts.saturating_add(1);
                        if s.status == DeliveryStatus::Ok {
                            s.status = DeliveryStatus::Retrying;
                        }
                        s.last_error = Some(DeliveryError {
                            at: self.hub.now_ms(),
                            status: f.status,
                            message: f.message,
                        });
                        let attempts = s.attempts;
                        self.save(&mut progress).await;
                        let w = &self.hub.config.webhooks;
                        let unit: f64 = rand::rng().random();
                        let wait = backoff::delay(attempts, w.retry_min, w.retry_max, unit);
                        self.backoff(wait, &rec).await;
                        break;
                    }
                    // Told to stop while the request was in flight: what it
                    // carried is sent again by whoever delivers next.
                    Err(None) => {
                        stopped = true;
                        break;
                    }
                }
            }
            if stopped {
                break;
            }
            if sent == matching.len() {
                first_seen = None;
            }
        }
        metrics.webhook_pending.sub(reported_pending);
    }

    fn fresh(&self, rec: &WebhookRecord) -> WebhookProgress {
        WebhookProgress {
            generation: self.generation.clone(),
            state: crate::webhook::view::untouched(rec),
            saved_at: 0,
            cleared_at: rec.cleared_at,
        }
    }

    async fn save(&self, p: &mut WebhookProgress) {
        p.saved_at = self.hub.now_ms();
        if let Err(e) = self
            .hub
            .store()
            .save_webhook_progress(&self.tenant, &self.id, p)
            .await
        {
            // Delivery goes on from memory; a takeover before the next save
            // sends the events since the last saved cursor again.
            tracing::warn!(tenant = %self.tenant, webhook = %self.id, error = %e,
                "cannot save the webhook's progress");
        }
    }

    /// One signed POST of `batch`. `Err(None)`: told to stop meanwhile.
    async fn post(&self, rec: &WebhookRecord, batch: &[Event]) -> Result<(), Option<Failed>> {
        let policy = &self.hub.config.webhooks.allowed_hosts;
        let url = target::parse_url(&rec.url).map_err(|e| refused(&e))?;
        target::check_literal(policy, &url).map_err(|e| refused(&e))?;
        let body = serde_json::to_vec(&WebhookBatch {
            events: batch.to_vec(),
        })
        // A plain struct of strings, numbers and enums: cannot fail.
        .expect("batches serialise");
        let t = self.hub.now_ms() / 1000;
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(sign::HEADER, sign::header(rec.secret.as_bytes(), t, &body))
            .header("presence-webhook", &rec.id)
            .body(body)
            .send();
        let answer = tokio::select! {
            a = request => a,
            _ = self.stop.cancelled() => return Err(None),
        };
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Some(Failed {
                status: Some(r.status().as_u16()),
                message: format!("HTTP {}", r.status()),
            })),
            Err(e) => Err(Some(Failed {
                status: None,
                message: chain(&e),
            })),
        }
    }

    /// Until more events may be read, `until`, a recheck, or the stop.
    async fn wait(&self, rx: &mut tokio::sync::watch::Receiver<u64>, until: Option<Instant>) {
        let until = until.unwrap_or_else(|| Instant::now() + RECHECK);
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// The backoff before a retry, cut short when the webhook's URL or
    /// secret changes (the consumer fixed it) or the deliverer stops.
    async fn backoff(&self, wait: Duration, rec: &WebhookRecord) {
        let end = Instant::now() + wait;
        while Instant::now() < end && !self.stop.is_cancelled() {
            self.pause(RECHECK.min(end - Instant::now())).await;
            match self.record() {
                Some(now) if now.url == rec.url && now.secret == rec.secret => {}
                _ => return,
            }
        }
    }
}

fn refused(e: &target::TargetError) -> Option<Failed> {
    Some(Failed {
        status: None,
        message: e.to_string(),
    })
}

/// An error and its causes: reqwest's own message alone ("error sending
/// request") does not say what happened.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
