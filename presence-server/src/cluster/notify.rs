//! Cluster mode's subscription: the channel of every tenant this node
//! holds (`keys::tenant_channel`) and the one tenant-created channel, on a
//! single Redis or a Redis Cluster, and the messages that arrive on them.
//!
//! A tenant's channel carries its presence events (`presence.lua`) and a
//! notice per committed directory batch (`commit.lua`). On a Redis Cluster
//! it is a sharded channel (`SSUBSCRIBE`, one per tenant: each is routed to
//! the shard of its slot); on a single Redis a plain one (`SUBSCRIBE`, many
//! at once), as `RedisConn::publish_command` explains. The tenant-created
//! channel is plain on both.
//!
//! The subscription reports itself [`Incoming::Lost`] (or its stream ends)
//! whenever a message may have been missed: the connection (or one of a
//! cluster's node connections) dropped, or Redis ended a sharded
//! subscription itself (its slot moved). The caller then starts a new
//! subscription and resyncs; the crate's own automatic resubscription is
//! not relied on, since it would not say what was missed.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisError, Value};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::cluster::keys::{tenant_channel, TENANT_CREATED_CHANNEL};
use crate::cluster::ops::PresenceEvent;
use crate::store::redis_conn::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// A subscription command waits this long for all its confirmations (a
/// single Redis confirms one per channel, many channels per command).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Channels per `SUBSCRIBE` on a single Redis.
const SUBSCRIBE_CHUNK: usize = 500;
/// `SSUBSCRIBE`s in flight at once on a Redis Cluster (one per tenant).
const SSUBSCRIBE_IN_FLIGHT: usize = 64;

/// Why subscribing failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubscribeError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("Redis did not confirm the subscription within {0:?}")]
    Timeout(Duration),
}

/// What a tenant's channel carries: a committed directory batch's notice
/// (`{"t", "dir"}` from `commit.lua`) or a presence event. Tried in this
/// order: a presence event has no `dir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum Notice {
    /// Tenant `t` is at directory version `dir`.
    Directory {
        t: String,
        dir: u64,
    },
    Presence(PresenceEvent),
}

/// What arrives on the subscription.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A payload of a tenant's channel (see [`Notice`]).
    Tenant(String),
    /// A tenant id from the tenant-created channel.
    Created(String),
    /// Something may have been missed: resubscribe and resync.
    Lost,
}

/// Where subscriptions are added; cheap to keep beside the stream.
pub(crate) enum Sink {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

/// Where messages arrive.
pub(crate) enum Messages {
    Single(PubSubStream),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// Opens a subscription connection to `url` (a Redis Cluster when
/// `cluster`, as `RedisConn::connect` found it), subscribed to the
/// tenant-created channel and nothing else yet.
pub(crate) async fn open(url: &str, cluster: bool) -> Result<(Sink, Messages), SubscribeError> {
    let (mut sink, messages) = if cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(vec![url])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            // Push messages (and so pub/sub on a cluster connection) need
            // RESP3.
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let conn = client.get_async_connection().await?;
        (Sink::Cluster(conn), Messages::Cluster(rx))
    } else {
        let client = redis::Client::open(url)?;
        let pubsub = tokio::time::timeout(
            CONNECT_TIMEOUT + RESPONSE_TIMEOUT,
            client.get_async_pubsub(),
        )
        .await
        .map_err(|_| SubscribeError::Timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT))??;
        let (sink, stream) = pubsub.split();
        (Sink::Single(sink), Messages::Single(stream))
    };
    bounded(async {
        match &mut sink {
            Sink::Single(s) => s.subscribe(TENANT_CREATED_CHANNEL).await,
            Sink::Cluster(c) => c.subscribe(TENANT_CREATED_CHANNEL).await,
        }
    })
    .await?;
    Ok((sink, messages))
}

impl Sink {
    /// Subscribes to the channels of `tenants`; returns once Redis
    /// confirmed every one, so a message published after this returns
    /// arrives.
    pub(crate) async fn subscribe_tenants(
        &mut self,
        tenants: &[String],
    ) -> Result<(), SubscribeError> {
        let channels: Vec<String> = tenants.iter().map(|t| tenant_channel(t)).collect();
        match self {
            Sink::Single(s) => {
                for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                    bounded(s.subscribe(chunk)).await?;
                }
                Ok(())
            }
            Sink::Cluster(c) => {
                // One SSUBSCRIBE per channel: the channels of one command
                // must share a slot.
                let mut done = stream::iter(channels)
                    .map(|ch| {
                        let mut c = c.clone();
                        async move { bounded(async move { c.ssubscribe(ch).await }).await }
                    })
                    .buffer_unordered(SSUBSCRIBE_IN_FLIGHT);
                while let Some(r) = done.next().await {
                    r?;
                }
                Ok(())
            }
        }
    }
}

impl Sink {
    /// Unsubscribes from the channel of `tid` (a tenant this node evicted).
    pub(crate) async fn unsubscribe_tenant(&mut self, tid: &str) -> Result<(), SubscribeError> {
        let ch = tenant_channel(tid);
        match self {
            Sink::Single(s) => bounded(s.unsubscribe(ch)).await?,
            Sink::Cluster(c) => bounded(c.sunsubscribe(ch)).await?,
        }
        Ok(())
    }
}

impl Messages {
    /// The next message; `None` when the connection is gone (as
    /// [`Incoming::Lost`]).
    pub(crate) async fn next(&mut self) -> Option<Incoming> {
        match self {
            Messages::Single(s) => {
                let msg = s.next().await?;
                let Ok(payload) = msg.get_payload::<String>() else {
                    return Some(Incoming::Tenant(String::new()));
                };
                if msg.get_channel_name() == TENANT_CREATED_CHANNEL {
                    Some(Incoming::Created(payload))
                } else {
                    Some(Incoming::Tenant(payload))
                }
            }
            Messages::Cluster(rx) => loop {
                let push = rx.recv().await?;
                if let Some(incoming) = from_push(push) {
                    return Some(incoming);
                }
            },
        }
    }
}

/// A cluster connection's push, as what it means here; `None` for what
/// means nothing (a subscription's confirmation).
fn from_push(push: PushInfo) -> Option<Incoming> {
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let payload = match push.data.get(1) {
                Some(v) => text(v),
                None => String::new(),
            };
            let created = push.kind == PushKind::Message
                && push.data.first().map(text).as_deref() == Some(TENANT_CREATED_CHANNEL);
            Some(if created {
                Incoming::Created(payload)
            } else {
                Incoming::Tenant(payload)
            })
        }
        // Nothing here unsubscribes: Redis ended a subscription (a sharded
        // channel's slot moved), or a node connection dropped.
        PushKind::Disconnection | PushKind::SUnsubscribe | PushKind::Unsubscribe => {
            Some(Incoming::Lost)
        }
        _ => None,
    }
}

fn text(v: &Value) -> String {
    redis::from_redis_value_ref::<String>(v).unwrap_or_default()
}

async fn bounded<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, SubscribeError> {
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, f)
        .await
        .map_err(|_| SubscribeError::Timeout(SUBSCRIBE_TIMEOUT))?
        .map_err(SubscribeError::Redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two shapes the scripts publish (`commit.lua`, `presence.lua`).
    #[test]
    fn a_tenant_channel_payload_is_a_directory_notice_or_a_presence_event() {
        assert_eq!(
            serde_json::from_str::<Notice>(r#"{"t":"acme","dir":7}"#).unwrap(),
            Notice::Directory {
                t: "acme".into(),
                dir: 7
            }
        );
        let ev = r#"{"t":"acme","u":"ann","s":1,"since":5,"v":2,"seen":5,"force":false,
                    "close":0,"cursor":3,"reason":"activity","at":0}"#;
        match serde_json::from_str::<Notice>(ev).unwrap() {
            Notice::Presence(e) => assert_eq!((e.u.as_str(), e.v, e.cursor), ("ann", 2, 3)),
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<Notice>(r#"{"t":"acme"}"#).is_err());
    }

    #[test]
    fn a_dropped_node_connection_or_an_ended_subscription_is_a_loss() {
        let push = |kind, data: Vec<&str>| PushInfo {
            kind,
            data: data
                .into_iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        };
        assert!(matches!(
            from_push(push(PushKind::Disconnection, vec![])),
            Some(Incoming::Lost)
        ));
        assert!(matches!(
            from_push(push(PushKind::SUnsubscribe, vec!["presence:{a}:notify"])),
            Some(Incoming::Lost)
        ));
        assert!(from_push(push(PushKind::SSubscribe, vec!["presence:{a}:notify"])).is_none());
        assert!(matches!(
            from_push(push(PushKind::SMessage, vec!["presence:{a}:notify", "x"])),
            Some(Incoming::Tenant(p)) if p == "x"
        ));
        assert!(matches!(
            from_push(push(PushKind::Message, vec![TENANT_CREATED_CHANNEL, "a"])),
            Some(Incoming::Created(t)) if t == "a"
        ));
    }
}
