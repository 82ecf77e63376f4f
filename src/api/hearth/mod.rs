//! Hearth's own endpoints under `/_hearth`, outside the Matrix APIs.

pub mod health;
