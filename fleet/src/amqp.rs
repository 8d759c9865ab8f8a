//! RabbitMQ for the workers and the dispatcher: connecting, the topology (declared the same way by
//! both sides), and a publisher that survives broker restarts.
//!
//! Topology: `freezer.tasks` (direct), `freezer.events` (topic), `freezer.dead` (fanout) with the
//! durable queue `freezer.dead` bound to it; the node and pool queues are durable quorum queues
//! with `x-delivery-limit` and dead-lettering to `freezer.dead`, bound to `freezer.tasks` with
//! their own name as routing key. Every declaration is idempotent, so each worker (and the
//! dispatcher) may declare it on every connect.

use freezer_contracts::{
    Event, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, REASON_HEADER, TASKS_EXCHANGE,
};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;
use tokio::sync::{watch, RwLock};

/// AMQP delivery mode of a persistent message.
const PERSISTENT: u8 = 2;

/// How long [`connect`] waits for the broker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No answer within [`CONNECT_TIMEOUT`].
    #[error("cannot connect to the broker at {url}: timed out")]
    TimedOut {
        /// The URL, password redacted.
        url: String,
    },
    /// The connection failed (refused, authentication, TLS...).
    #[error("cannot connect to the broker at {url}")]
    Failed {
        /// The URL, password redacted.
        url: String,
        /// What the AMQP client said.
        #[source]
        source: lapin::Error,
    },
}

/// Why a message was not published (after the retries of [`Publisher::publish`]).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection to publish on.
    #[error("no connection to the broker")]
    NotConnected,
    /// The broker answered with a negative confirm.
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// The channel or connection failed.
    #[error("{0}")]
    Broker(#[from] lapin::Error),
}

/// Connects to `url` within [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str) -> Result<Connection, ConnectError> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(ConnectError::Failed {
            url: redact(url),
            source,
        }),
        Err(_) => Err(ConnectError::TimedOut { url: redact(url) }),
    }
}

/// Closes `conn`, giving up after 2 s (a close that waits for a broker that does not answer
/// must not hold up a shutdown or a change of leader).
pub async fn close(conn: Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "closing".into())).await;
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The arguments of a task queue: quorum, delivery limit, dead-lettering.
pub fn task_queue_args(delivery_limit: u32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(delivery_limit).unwrap_or(i32::MAX)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(DEAD_LETTER_EXCHANGE)),
    );
    args
}

/// Declares the exchanges, the dead-letter queue and `queues` (task queues) with their bindings.
pub async fn declare(ch: &Channel, queues: &[String], delivery_limit: u32) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        TASKS_EXCHANGE.into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        EVENTS_EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        DEAD_LETTER_EXCHANGE.into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    let qdurable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(DEAD_LETTER_QUEUE.into(), qdurable, FieldTable::default())
        .await?;
    ch.queue_bind(
        DEAD_LETTER_QUEUE.into(),
        DEAD_LETTER_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for q in queues {
        ch.queue_declare(q.as_str().into(), qdurable, task_queue_args(delivery_limit))
            .await?;
        ch.queue_bind(
            q.as_str().into(),
            TASKS_EXCHANGE.into(),
            q.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Publishes with confirms on the current connection's channel, waiting through reconnects: an
/// event or a re-queued task is never dropped because the broker restarted (it is retried until
/// it is confirmed or `give_up` passes).
pub struct Publisher {
    channel: RwLock<Option<Channel>>,
    changed: watch::Sender<u64>,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            channel: RwLock::new(None),
            changed: watch::channel(0).0,
        }
    }
}

/// What to publish.
pub struct Outgoing<'a> {
    /// Exchange.
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// AMQP message id (the task id for tasks).
    pub message_id: Option<&'a str>,
    /// Rejection reason header (dead letters).
    pub reason: Option<&'a str>,
}

impl Publisher {
    /// Opens a confirm channel on `conn` and makes it the one publishes go through.
    pub async fn attach(&self, conn: &Connection) -> lapin::Result<()> {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *self.channel.write().await = Some(ch);
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Forgets the channel of a connection that failed.
    pub async fn detach(&self) {
        *self.channel.write().await = None;
    }

    /// Publishes `msg`, retrying (each 200 ms up to 1 s apart) until the broker confirms it or
    /// `give_up` has passed.
    pub async fn publish(&self, msg: &Outgoing<'_>, give_up: Duration) -> Result<(), PublishError> {
        let deadline = tokio::time::Instant::now() + give_up;
        let mut delay = Duration::from_millis(100);
        loop {
            let ch = self.channel.read().await.clone();
            let err = match ch {
                Some(ch) => match publish_once(&ch, msg).await {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
                None => PublishError::NotConnected,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "publish failed; retrying");
            let mut changed = self.changed.subscribe();
            let _ = tokio::time::timeout(delay, changed.changed()).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Publishes an event to `freezer.events` with its routing key.
    pub async fn event(&self, event: &Event, give_up: Duration) -> Result<(), PublishError> {
        let body = event.to_json();
        let key = event.routing_key();
        self.publish(
            &Outgoing {
                exchange: EVENTS_EXCHANGE,
                routing_key: &key,
                body: &body,
                message_id: None,
                reason: None,
            },
            give_up,
        )
        .await
    }
}

async fn publish_once(ch: &Channel, msg: &Outgoing<'_>) -> Result<(), PublishError> {
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(ShortString::from("application/json"));
    if let Some(id) = msg.message_id {
        props = props.with_message_id(ShortString::from(id));
    }
    if let Some(reason) = msg.reason {
        let mut headers = FieldTable::default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        props = props.with_headers(headers);
    }
    let confirm = ch
        .basic_publish(
            msg.exchange.into(),
            msg.routing_key.into(),
            BasicPublishOptions::default(),
            msg.body,
            props,
        )
        .await?
        .await?;
    if confirm.is_nack() {
        return Err(PublishError::Nacked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(super::redact("redis://h:6379/"), "redis://h:6379/");
    }
}
