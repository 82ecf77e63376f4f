//! Client-Server API handlers, one file per section of the spec (named like
//! `shared/matrix-spec/data/api/client-server/*.yaml`).

pub mod account_data;
pub mod account_deactivation;
pub mod banning;
pub mod capabilities;
pub mod content_repo;
pub mod create_room;
pub mod device_management;
pub mod directory;
pub mod event_context;
pub mod filter;
pub mod inviting;
pub mod joining;
pub mod kicking;
pub mod knocking;
pub mod leaving;
pub mod list_joined_rooms;
pub mod list_public_rooms;
pub mod login;
pub mod logout;
pub mod message_pagination;
pub mod password_management;
pub mod profile;
pub mod redaction;
pub mod registration;
pub mod relations;
pub mod room_event_by_timestamp;
pub mod room_send;
pub mod room_state;
pub mod room_upgrades;
pub mod rooms;
pub mod space_hierarchy;
pub mod users;
pub mod versions;
pub mod wellknown;
pub mod whoami;
