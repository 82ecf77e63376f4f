//! Client-Server API handlers, one file per section of the spec (named like
//! `shared/matrix-spec/data/api/client-server/*.yaml`).

pub mod account_data;
pub mod account_deactivation;
pub mod capabilities;
pub mod content_repo;
pub mod device_management;
pub mod filter;
pub mod login;
pub mod logout;
pub mod password_management;
pub mod profile;
pub mod registration;
pub mod versions;
pub mod wellknown;
pub mod whoami;
