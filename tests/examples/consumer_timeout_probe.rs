//! Probe (not part of the suite): how soon does the local RabbitMQ close a channel holding an
//! unacknowledged delivery once `consumer_timeout` is lowered? Tells whether the daemon's long
//! task test can observe a timeout.
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let conn = Connection::connect(
        freezer_e2e::fleet::AMQP_URL,
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = format!("probe.{}", freezer_e2e::fleet::suffix());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let mut c = ch2
        .basic_consume(
            q.as_str().into(),
            "probe".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _d = c.next().await.unwrap().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        if !ch2.status().connected() {
            println!("channel closed after {:.1} s", t.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if ch2.status().connected() {
        println!("channel still open after 120 s");
    }
    let _ = ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await;
}
