//! Taking deliveries from the broker with a prefetch equal to the free execution slots.
//!
//! Deliveries are acknowledged as soon as they are claimed (see [`super::handler`]), so the
//! broker's prefetch alone would not bound what a worker takes. The intake therefore counts every
//! delivery it has taken and not finished (`reserved`): while it is below the concurrency it
//! consumes each queue with `basic.qos(prefetch = free slots)`; when it reaches the concurrency
//! it cancels its consumers (the broker stops delivering) and consumes again, with the new
//! number of free slots, once a task ends. Deliveries that arrived before the cancellation took
//! effect are handled normally (claimed, acknowledged, waiting for a slot), so none stays
//! unacknowledged for long and `consumer_timeout` never applies.

use super::handler;
use super::Shared;
use futures_util::stream::{SelectAll, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

type Deliveries = SelectAll<
    Pin<
        Box<
            dyn futures_util::Stream<Item = (String, lapin::Result<lapin::message::Delivery>)>
                + Send,
        >,
    >,
>;

/// Consumes `queues` on `conn` until the connection fails (`Err`) or the worker starts stopping
/// ([`Shared::stopping`] cancelled: `Ok`).
pub async fn consume(
    shared: &Arc<Shared>,
    conn: &Connection,
    queues: &[String],
) -> Result<(), String> {
    let stop = &shared.stopping;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    let capacity = shared.daemon.concurrency;
    let mut round = 0u64;
    loop {
        // Wait for a free slot.
        let free = loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let notified = shared.slot_freed.notified();
            let reserved = shared.reserved.load(Ordering::SeqCst);
            if reserved < capacity {
                break capacity - reserved;
            }
            // The one-second tick is a poll that remains: it notices a broker connection that
            // closed while every slot is busy (lapin offers no future for that).
            tokio::select! {
                _ = notified => {}
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if !conn.status().connected() {
                return Err("the connection to the broker closed".into());
            }
        };
        let prefetch = u16::try_from(free).unwrap_or(u16::MAX);
        ch.basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        round += 1;
        let mut tags = Vec::new();
        let mut merged: Deliveries = SelectAll::new();
        for q in queues {
            let tag = format!("{}.{round}.{q}", shared.daemon.node);
            let consumer = ch
                .basic_consume(
                    q.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let q = q.clone();
            merged.push(Box::pin(consumer.map(move |d| (q.clone(), d))));
            tags.push(tag);
        }
        let stopped = loop {
            tokio::select! {
                _ = stop.cancelled() => break true,
                next = merged.next() => match next {
                    Some((q, Ok(delivery))) => {
                        dispatch(shared, q, delivery);
                        if shared.reserved.load(Ordering::SeqCst) >= capacity {
                            break false;
                        }
                    }
                    Some((_, Err(e))) => return Err(e.to_string()),
                    None => return Err("the consumers ended".into()),
                },
            }
        };
        for tag in &tags {
            ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        // Deliveries sent before the cancellation: handle them (they wait for a slot claimed).
        while let Ok(Some((q, Ok(delivery)))) =
            tokio::time::timeout(Duration::from_millis(100), merged.next()).await
        {
            dispatch(shared, q, delivery);
        }
        if stopped {
            return Ok(());
        }
    }
}

fn dispatch(shared: &Arc<Shared>, queue: String, delivery: lapin::message::Delivery) {
    shared.reserved.fetch_add(1, Ordering::SeqCst);
    shared
        .tasks
        .spawn(handler::handle(shared.clone(), queue, delivery));
}
