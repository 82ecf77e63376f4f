//! Integration tests: each starts the real `hearth` binary on a free loopback port with a fresh
//! data directory and talks to it over HTTP, with `matrix-sdk` or plain requests.

mod accounts;
mod admin_cli;
mod appservices;
mod common;
mod dehydrated_devices;
mod e2ee;
mod email;
mod email_registration;
mod errors;
mod federation;
mod federation_access;
mod federation_e2ee;
mod federation_hostile;
mod hostile;
mod js_client;
mod lifecycle;
mod limits;
mod media;
mod metrics;
mod moderation;
mod notifications;
mod peeking;
mod processes;
mod room_summary;
mod rooms;
mod sdk;
mod search;
mod sessions;
mod sliding_sync;
mod synapse;
mod sync;
mod threads;
mod voip;
