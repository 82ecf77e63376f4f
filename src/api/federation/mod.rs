//! Server-Server API handlers, one file per section of the federation spec. Requests are
//! verified (X-Matrix) by the extractor before a handler runs; with `federation.enabled = false`
//! none of them is served.

pub mod directory;
pub mod e2ee;
pub mod history;
pub mod keys;
pub mod media;
pub mod membership;
pub mod openid;
pub mod query;
pub mod space;
pub mod transactions;
pub mod version;
