//! Server-Server API handlers, one file per section of the federation spec.

pub mod keys;
