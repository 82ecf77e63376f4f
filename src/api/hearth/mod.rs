//! Hearth's own endpoints outside the Matrix APIs: health checks under `/_hearth`, and the
//! metrics served on their own listener.

pub mod health;
pub mod metrics;
pub mod pages;
