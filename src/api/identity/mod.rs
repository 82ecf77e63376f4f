//! The Identity Service API v2, served by the homeserver itself (the subset Element uses), one
//! file per section of the spec (`shared/matrix-spec/data/api/identity/*.yaml`). Tokens are
//! the built-in identity service's, issued for OpenID tokens of this server's users.

pub mod associations;
pub mod auth;
pub mod invitations;
pub mod lookup;
pub mod pubkey;
pub mod status;
pub mod terms;
