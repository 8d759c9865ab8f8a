//! The engine: backup, restore and the stages they are built from. It knows nothing of AMQP or
//! Redis; the CLI and (later) the daemon call it the same way.

pub mod backup;
pub mod extract;
pub mod pipeline;
pub mod producer;
pub mod prune;
pub mod reader;
pub mod restore;
pub mod tarfmt;
pub mod verify;
pub mod walk;
