//! The webhook requests of SPEC §10 turned into [`Write`]s. Pure like
//! `ops`: whether the URL's host may be reached is checked before, by the
//! API (`webhook::target`), since that needs DNS.

use presence_protocol::WebhookPut;

use crate::directory::ops::check_id;
use crate::directory::{DirectoryError, TenantDir, WebhookRecord, Write};

/// Webhooks one tenant may have.
pub const MAX_WEBHOOKS: usize = 16;
/// Bounds of a webhook's secret, in bytes.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=512;

fn invalid(field: &str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Where a `PUT` of a webhook starts and who it is: a new webhook starts at
/// `body.after` or the feed's `cursor` now, with a fresh `generation`; one
/// that exists keeps both (it goes on where it was), and its `cleared_at`
/// becomes `now_ms` (a `PUT` acknowledges a `failing` mark).
///
/// Returns the writes and whether the webhook is new.
///
/// # Errors
/// A bad id, secret or filter, or too many webhooks.
pub fn put_webhook(
    dir: &TenantDir,
    id: &str,
    body: &WebhookPut,
    cursor: u64,
    generation: &str,
    now_ms: u64,
) -> Result<(Vec<Write>, bool), DirectoryError> {
    check_id("webhook", id)?;
    if !SECRET_LEN.contains(&body.secret.len()) {
        return Err(invalid(
            "secret",
            format!(
                "must be {} to {} bytes",
                SECRET_LEN.start(),
                SECRET_LEN.end()
            ),
        ));
    }
    if body.statuses.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid(
            "statuses",
            "must not be empty (leave it out for every status)",
        ));
    }
    if body.reasons.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid(
            "reasons",
            "must not be empty (leave it out for every reason)",
        ));
    }
    let existing = dir.webhooks.get(id);
    if existing.is_none() && dir.webhooks.len() >= MAX_WEBHOOKS {
        return Err(invalid(
            "webhook",
            format!("a tenant has at most {MAX_WEBHOOKS} webhooks"),
        ));
    }
    let webhook = match existing {
        Some(w) => WebhookRecord {
            id: id.to_owned(),
            url: body.url.clone(),
            secret: body.secret.clone(),
            statuses: body.statuses.clone(),
            reasons: body.reasons.clone(),
            start_after: w.start_after,
            generation: w.generation.clone(),
            cleared_at: now_ms,
        },
        None => WebhookRecord {
            id: id.to_owned(),
            url: body.url.clone(),
            secret: body.secret.clone(),
            statuses: body.statuses.clone(),
            reasons: body.reasons.clone(),
            start_after: body.after.unwrap_or(cursor),
            generation: generation.to_owned(),
            cleared_at: now_ms,
        },
    };
    Ok((
        vec![Write::Webhook {
            tenant: dir.tenant.id.clone(),
            webhook,
        }],
        existing.is_none(),
    ))
}

/// # Errors
/// No webhook has this id.
pub fn delete_webhook(dir: &TenantDir, id: &str) -> Result<Vec<Write>, DirectoryError> {
    if !dir.webhooks.contains_key(id) {
        return Err(DirectoryError::UnknownWebhook(id.to_owned()));
    }
    Ok(vec![Write::DeleteWebhook {
        tenant: dir.tenant.id.clone(),
        id: id.to_owned(),
    }])
}

#[cfg(test)]
mod tests {
    use presence_protocol::{Reason, Status};

    use super::*;
    use crate::directory::TenantRecord;

    fn dir() -> TenantDir {
        TenantDir::new(TenantRecord {
            id: "acme".into(),
            user_limit: 10,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        })
    }

    fn body() -> WebhookPut {
        WebhookPut {
            url: "https://erp.example.com/hook".into(),
            secret: "0123456789abcdef".into(),
            statuses: None,
            reasons: Some(vec![Reason::Logout]),
            after: None,
        }
    }

    #[test]
    fn a_new_webhook_starts_now_and_an_existing_one_goes_on() {
        let mut d = dir();
        let (ws, new) = put_webhook(&d, "erp", &body(), 41, "g1", 5).unwrap();
        assert!(new);
        d.apply(&ws[0]);
        assert_eq!(d.webhooks["erp"].start_after, 41);
        let changed = WebhookPut {
            url: "https://erp.example.com/other".into(),
            after: Some(0),
            ..body()
        };
        let (ws, new) = put_webhook(&d, "erp", &changed, 99, "g2", 7).unwrap();
        assert!(!new);
        d.apply(&ws[0]);
        let w = &d.webhooks["erp"];
        assert_eq!(
            (w.start_after, w.generation.as_str(), w.cleared_at),
            (41, "g1", 7)
        );
        assert_eq!(w.url, "https://erp.example.com/other");
        assert!(w.matches(Status::Offline, Reason::Logout));
        assert!(!w.matches(Status::Offline, Reason::Idle));
    }

    #[test]
    fn bad_secrets_filters_and_ids_are_refused() {
        let d = dir();
        let short = WebhookPut {
            secret: "short".into(),
            ..body()
        };
        let empty = WebhookPut {
            statuses: Some(vec![]),
            ..body()
        };
        for (id, b, field) in [
            ("erp", short, "secret"),
            ("erp", empty, "statuses"),
            ("a/b", body(), "webhook"),
        ] {
            match put_webhook(&d, id, &b, 0, "g", 0) {
                Err(DirectoryError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert_eq!(
            delete_webhook(&d, "nope"),
            Err(DirectoryError::UnknownWebhook("nope".into()))
        );
    }

    #[test]
    fn a_tenant_has_a_bounded_number_of_webhooks() {
        let mut d = dir();
        for i in 0..MAX_WEBHOOKS {
            let (ws, _) = put_webhook(&d, &format!("w{i}"), &body(), 0, "g", 0).unwrap();
            d.apply(&ws[0]);
        }
        assert!(put_webhook(&d, "one-more", &body(), 0, "g", 0).is_err());
        assert!(put_webhook(&d, "w0", &body(), 0, "g", 0).is_ok());
    }
}
