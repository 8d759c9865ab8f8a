//! RabbitMQ for the dispatcher: the topology (the fleet's [`declare`], so the workers and the
//! dispatcher declare the same queues with the same arguments), publishing tasks with confirms, and a feed of events
//! from a queue to a broadcast channel that every waiting run (or `publish --wait`) subscribes to.

use crate::error::{Error, Result};
use freezer_contracts::{Event, TaskEnvelope, EVENTS_EXCHANGE, TASKS_EXCHANGE};
use freezer_fleet::amqp::{declare, Outgoing, Publisher};
use freezer_fleet::Keys;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, RwLock};

/// Delivery limit of task queues, the workers' default (`delivery_limit = 5`): the dispatcher
/// may declare a queue first, and the arguments must match the workers'.
pub const DELIVERY_LIMIT: u32 = 5;

/// Events kept in the dispatcher's durable events queue while no dispatcher leads: they are only
/// a fast path (the task records in Redis are the truth), so old ones may go.
const EVENTS_QUEUE_MAX_LEN: i64 = 100_000;
const EVENTS_QUEUE_TTL_MS: i64 = 86_400_000;

/// The dispatcher's connection to the broker, shared by every run.
pub struct Bus {
    publisher: Publisher,
    declare_ch: RwLock<Option<Channel>>,
    declared: Mutex<HashSet<String>>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            publisher: Publisher::default(),
            declare_ch: RwLock::new(None),
            declared: Mutex::new(HashSet::new()),
            events: broadcast::channel(4096).0,
        }
    }
}

impl Bus {
    /// A bus with no connection yet.
    pub fn new() -> Arc<Bus> {
        Arc::new(Bus::default())
    }

    /// Receives every event fed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Declares the topology on `conn` and publishes through it from now on.
    pub async fn attach(&self, conn: &Connection) -> Result<()> {
        let ch = conn.create_channel().await?;
        declare(&ch, &[], DELIVERY_LIMIT)
            .await
            .map_err(|e| Error::broker_from("cannot declare the topology", e))?;
        self.declared.lock().unwrap().clear();
        *self.declare_ch.write().await = Some(ch);
        Ok(self.publisher.attach(conn).await?)
    }

    /// Forgets the connection (it failed or is being closed).
    pub async fn detach(&self) {
        self.publisher.detach().await;
        *self.declare_ch.write().await = None;
    }

    /// Declares the durable `queue` bound to `freezer.events` with `task.#` (the dispatchers'
    /// shared events queue).
    pub async fn declare_events_queue(conn: &Connection, queue: &str) -> Result<()> {
        let ch = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(EVENTS_QUEUE_MAX_LEN),
        );
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(EVENTS_QUEUE_TTL_MS),
        );
        let opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(queue.into(), opts, args)
            .await
            .map_err(|e| {
                Error::broker_from(format!("cannot declare the events queue {queue}"), e)
            })?;
        bind(&ch, queue, "task.#").await?;
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    /// Declares an exclusive, auto-deleted queue bound with `pattern` (for `publish --wait`) and
    /// returns its name; its channel must stay open, so it is returned too.
    pub async fn private_events_queue(
        conn: &Connection,
        pattern: &str,
    ) -> Result<(Channel, String)> {
        let ch = conn.create_channel().await?;
        let opts = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("".into(), opts, FieldTable::default())
            .await
            .map_err(|e| Error::broker_from("cannot declare an events queue", e))?;
        let name = q.name().to_string();
        bind(&ch, &name, pattern).await?;
        Ok((ch, name))
    }

    /// Consumes `queue` on `ch` and broadcasts every valid event until the consumer ends (the
    /// connection failed or the channel closed). Invalid events are acknowledged and dropped.
    pub async fn feed(&self, ch: &Channel, queue: &str) -> Result<()> {
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::broker_from(format!("cannot consume {queue}"), e))?;
        while let Some(d) = consumer.next().await {
            let d = d?;
            match Event::from_json(&d.data) {
                Ok(e) => {
                    let _ = self.events.send(Arc::new(e));
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an unreadable event"),
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
        Err(Error::broker(format!("the consumer of {queue} ended")))
    }

    /// Publishes `task` to `queue` with a confirm: declares the queue first (as the workers do),
    /// records the task as `queued` in Redis unless a record exists, then publishes it
    /// persistent with the task id as message id. An unconfirmed publish after `give_up` is an
    /// error.
    pub async fn publish_task(
        &self,
        redis: &mut ConnectionManager,
        keys: &Keys,
        queue: &str,
        task: &TaskEnvelope,
        give_up: Duration,
    ) -> Result<()> {
        self.ensure_queue(queue).await?;
        record_queued(redis, keys, queue, task)
            .await
            .map_err(Error::redis(format!(
                "cannot record task {} in Redis",
                task.task_id
            )))?;
        let body = task.to_json();
        let id = task.task_id.to_string();
        self.publisher
            .publish(
                &Outgoing {
                    exchange: TASKS_EXCHANGE,
                    routing_key: queue,
                    body: &body,
                    message_id: Some(&id),
                    reason: None,
                },
                give_up,
            )
            .await
            .map_err(|e| {
                Error::broker_from(
                    format!("task {id} to {queue} not confirmed by the broker"),
                    e,
                )
            })
    }

    async fn ensure_queue(&self, queue: &str) -> Result<()> {
        if self.declared.lock().unwrap().contains(queue) {
            return Ok(());
        }
        // Wait (up to 30 s) for a connection, as the publisher does.
        let mut waited = Duration::ZERO;
        let ch = loop {
            if let Some(ch) = self.declare_ch.read().await.clone() {
                break ch;
            }
            if waited >= Duration::from_secs(30) {
                return Err(Error::broker("no connection to the broker"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            waited += Duration::from_millis(200);
        };
        declare(&ch, &[queue.to_string()], DELIVERY_LIMIT)
            .await
            .map_err(|e| Error::broker_from(format!("cannot declare {queue}"), e))?;
        self.declared.lock().unwrap().insert(queue.to_string());
        Ok(())
    }
}

async fn bind(ch: &Channel, queue: &str, pattern: &str) -> Result<()> {
    ch.queue_bind(
        queue.into(),
        EVENTS_EXCHANGE.into(),
        pattern.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| {
        Error::broker_from(
            format!("cannot bind {queue} to {EVENTS_EXCHANGE} with {pattern}"),
            e,
        )
    })
}

const RECORD_QUEUED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queue', ARGV[1], 'job_id', ARGV[2],
  'run_id', ARGV[3], 'kind', ARGV[4], 'attempt', ARGV[5], 'published_at', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"#;

/// Creates the task record with state `queued` (see [`freezer_fleet::keys`]); a record that exists (the
/// task was published before, or already runs) is left alone.
async fn record_queued(
    redis: &mut ConnectionManager,
    keys: &Keys,
    queue: &str,
    task: &TaskEnvelope,
) -> redis::RedisResult<()> {
    let now = freezer_fleet::clock::now();
    let until_expiry = task
        .expires_at
        .map_or(0, |e| e.unix_seconds() - now.unix_seconds())
        .max(0) as u64;
    let ttl = until_expiry + 86_400;
    redis::Script::new(RECORD_QUEUED)
        .key(keys.task(task.task_id.as_str()))
        .arg(queue)
        .arg(&task.job_id)
        .arg(&task.run_id)
        .arg(task.kind().as_str())
        .arg(task.attempt)
        .arg(now.to_string())
        .arg(ttl)
        .invoke_async::<i64>(redis)
        .await
        .map(|_| ())
}
