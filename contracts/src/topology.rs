//! RabbitMQ names (ARCHITECTURE.md §4): defined once here so the dispatcher, the workers and ops tooling
//! cannot disagree about where a message goes.

/// Direct exchange the dispatcher publishes tasks to; routing keys are queue names
/// ([`node_queue`], [`pool_queue`]), so one exchange serves both targeted and pooled work.
pub const TASKS_EXCHANGE: &str = "freezer.tasks";

/// Topic exchange for results and progress, routed by [`crate::Event::routing_key`], so that the
/// dispatcher, dashboards and ops tooling can each bind to just the events they care about.
pub const EVENTS_EXCHANGE: &str = "freezer.events";

/// Exchange that task queues dead-letter to (delivery limit reached, or a task rejected as
/// malformed), so that no task silently disappears.
pub const DEAD_LETTER_EXCHANGE: &str = "freezer.dead";

/// Queue bound to [`DEAD_LETTER_EXCHANGE`] that keeps dead tasks for inspection (same name as the
/// exchange; RabbitMQ keeps the two namespaces apart).
pub const DEAD_LETTER_QUEUE: &str = "freezer.dead";

/// Message header carrying the rejection reason on a task the worker sends to
/// [`DEAD_LETTER_EXCHANGE`], so the reason travels with the message as well as in the event.
pub const REASON_HEADER: &str = "x-freezer-reason";

/// Kind used in routing keys when a rejected message's kind could not be read.
pub const UNKNOWN_KIND: &str = "unknown";

/// Name of the queue holding tasks for one node (`freezer.node.<node>`), for work that must run on a
/// particular machine, such as backing up its own files.
pub fn node_queue(node: &str) -> String {
    format!("freezer.node.{node}")
}

/// Name of the queue shared by the workers of a pool (`freezer.pool.<pool>`), for work any of them
/// can do, such as pruning or verifying a shared storage.
pub fn pool_queue(pool: &str) -> String {
    format!("freezer.pool.{pool}")
}

/// Routing key of an event on [`EVENTS_EXCHANGE`]: `task.<kind>.<status>`. Takes names rather than
/// types so that a binding pattern or a test can be written the same way (`task.*.failed`).
pub fn event_routing_key(kind: &str, status: &str) -> String {
    format!("task.{kind}.{status}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(node_queue("web1"), "freezer.node.web1");
        assert_eq!(pool_queue("prune"), "freezer.pool.prune");
        assert_eq!(TASKS_EXCHANGE, "freezer.tasks");
        assert_eq!(EVENTS_EXCHANGE, "freezer.events");
        assert_eq!(DEAD_LETTER_EXCHANGE, "freezer.dead");
        assert_eq!(event_routing_key("backup", "failed"), "task.backup.failed");
    }
}
