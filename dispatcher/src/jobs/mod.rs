//! Job definitions: the model, job files in a watched directory, schedules.

pub mod dir;
pub mod error;
pub mod file;
pub mod model;
pub mod schedule;

pub use dir::{JobSet, LoadError};
pub use error::{FieldError, JobFileError, JobRef, ReadError, ScheduleError};
pub use model::{Action, DueRun, Job, Schedule, SessionDef, Target, When};
