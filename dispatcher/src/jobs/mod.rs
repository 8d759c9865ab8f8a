//! Job definitions: the model, job files in a watched directory, schedules.

pub mod file;
pub mod model;
pub mod schedule;

pub use model::{Action, DueRun, Job, Schedule, SessionDef, Target, When};
