//! Renders the report of one job (`essaim report`): a self-contained HTML page with its
//! plots as SVG, from what the coordinator's REST API says about the job. It is a crate
//! of its own because it is pure rendering (data in, bytes out, no I/O and no clock), a
//! fifth of the binary's code, and its small SVG charts also draw the evaluation's
//! plots (`essaim-eval`).

mod html;
mod plots;
pub mod svg;

pub use html::{Report, ReportInput, render};
pub use plots::Plot;
