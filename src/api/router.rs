//! Every route of the server in one table, so the whole API surface is visible at a glance.
//! Ruma endpoints are mounted on every path their spec history lists (r0, v3, v1, unstable).

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use ruma::api::client::{
    account, alias, authenticated_media, backup, config, device, directory as room_directory, discovery, filter as filters,
    media as legacy_media, membership, message, profile as profiles, redact, room, search as searching, session, state,
};
use ruma::api::client::{
    context, keys as e2ee_keys, knock, presence as presence_status, push, read_marker, receipt, relations as relating, space,
    sync as syncing, tag, thirdparty, threads as thread_roots, to_device as to_devices, typing as typing_events, user_directory,
};
use ruma::api::federation::authenticated_media as federation_media;
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::device as federation_device;
use ruma::api::federation::directory as federation_directory;
use ruma::api::federation::discovery::{get_remote_server_keys, get_remote_server_keys_batch, get_server_keys, get_server_version};
use ruma::api::federation::event as federation_event;
use ruma::api::federation::event::{get_event, get_missing_events, get_room_state, get_room_state_ids};
use ruma::api::federation::keys as federation_keys;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event, prepare_knock_event, prepare_leave_event,
};
use ruma::api::federation::openid::get_openid_userinfo;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::api::federation::space as federation_space;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingRequest, Metadata};

use super::client::*;
use super::{federation, identity};
use crate::error::Error;
use crate::service::Services;
use ruma::api::identity_service as is;

type AppRouter = Router<Arc<Services>>;

/// The router being built, and the list of what it serves (`METHOD path`), which
/// `hearth routes` prints.
pub struct Routes {
    pub router: AppRouter,
    pub list: Vec<String>,
}

impl Routes {
    /// Mounts a handler of ruma endpoint `T` on every path its spec history lists.
    fn ruma<T: IncomingRequest, H: Handler<X, Arc<Services>>, X: 'static>(self, handler: H) -> Self {
        let paths = T::PATH_BUILDER.all_paths().map(str::to_owned).collect();
        self.on(<T as Metadata>::METHOD, paths, handler)
    }

    /// Like `ruma`, and also on the paths without the last parameter, which is then empty
    /// (state events with an empty state key).
    fn ruma_empty_last<T: IncomingRequest, H: Handler<X, Arc<Services>>, X: 'static>(self, handler: H) -> Self {
        let mut paths = Vec::new();
        for path in T::PATH_BUILDER.all_paths() {
            let Some((without_last, _)) = path.rsplit_once('/') else { continue };
            paths.extend([without_last.to_owned(), format!("{without_last}/")]);
        }
        self.on(<T as Metadata>::METHOD, paths, handler.clone()).ruma::<T, H, X>(handler)
    }

    /// A plain POST route.
    fn post<H: Handler<X, Arc<Services>>, X: 'static>(self, path: &str, handler: H) -> Self {
        self.on(http::Method::POST, vec![path.to_owned()], handler)
    }

    /// A plain GET route.
    fn get<H: Handler<X, Arc<Services>>, X: 'static>(self, path: &str, handler: H) -> Self {
        self.on(http::Method::GET, vec![path.to_owned()], handler)
    }

    fn on<H: Handler<X, Arc<Services>>, X: 'static>(mut self, method: http::Method, paths: Vec<String>, handler: H) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
        for path in paths {
            self.router = self.router.route(&path, on(filter, handler.clone()));
            self.list.push(format!("{method} {path}"));
        }
        self
    }
}

/// The router of the whole HTTP API.
#[allow(deprecated)] // the legacy media endpoints are still served
pub fn routes() -> Routes {
    Routes {
        router: Router::new(),
        list: Vec::new(),
    }
    // Discovery
    .ruma::<discovery::get_supported_versions::Request, _, _>(versions::get_supported_versions)
    .ruma::<discovery::get_capabilities::v3::Request, _, _>(capabilities::get_capabilities)
    .get("/.well-known/matrix/client", wellknown::client)
    .get("/.well-known/matrix/server", wellknown::server)
    .get("/.well-known/matrix/support", wellknown::support)
    // Sessions
    .ruma::<session::get_login_types::v3::Request, _, _>(login::get_login_types)
    .ruma::<session::login::v3::Request, _, _>(login::login)
    .ruma::<session::refresh_token::v3::Request, _, _>(login::refresh)
    .ruma::<session::get_login_token::v1::Request, _, _>(login::get_token)
    .ruma::<session::logout::v3::Request, _, _>(logout::logout)
    .ruma::<session::logout_all::v3::Request, _, _>(logout::logout_all)
    // Accounts
    .ruma::<account::register::v3::Request, _, _>(registration::register)
    .ruma::<account::request_registration_token_via_email::v3::Request, _, _>(registration::request_registration_token)
    .ruma::<account::get_username_availability::v3::Request, _, _>(registration::get_username_availability)
    .ruma::<account::check_registration_token_validity::v1::Request, _, _>(registration::check_registration_token_validity)
    .ruma::<account::whoami::v3::Request, _, _>(whoami::whoami)
    .ruma::<membership::get_mutual_rooms::v1::Request, _, _>(mutual_rooms::get_mutual_rooms)
    .ruma::<membership::get_mutual_rooms::unstable::Request, _, _>(mutual_rooms::get_mutual_rooms_unstable)
    .ruma::<account::request_openid_token::v3::Request, _, _>(openid::request_openid_token)
    .ruma::<account::change_password::v3::Request, _, _>(password_management::change_password)
    .ruma::<account::request_password_change_token_via_email::v3::Request, _, _>(password_management::request_password_change_token)
    // Email addresses
    .ruma::<account::request_3pid_management_token_via_email::v3::Request, _, _>(administrative_contact::request_token)
    .ruma::<account::add_3pid::v3::Request, _, _>(administrative_contact::add_3pid)
    .ruma::<account::get_3pids::v3::Request, _, _>(administrative_contact::get_3pids)
    .ruma::<account::delete_3pid::v3::Request, _, _>(administrative_contact::delete_3pid)
    .ruma::<account::bind_3pid::v3::Request, _, _>(administrative_contact::bind_3pid)
    .ruma::<account::unbind_3pid::v3::Request, _, _>(administrative_contact::unbind_3pid)
    .ruma::<account::deactivate::v3::Request, _, _>(account_deactivation::deactivate)
    .ruma::<ruma::api::client::admin::get_user_info::v3::Request, _, _>(admin::whois)
    .ruma::<ruma::api::client::admin::is_user_suspended::v1::Request, _, _>(admin::is_suspended)
    .ruma::<ruma::api::client::admin::suspend_user::v1::Request, _, _>(admin::suspend)
    .ruma::<ruma::api::client::admin::is_user_locked::v1::Request, _, _>(admin::is_locked)
    .ruma::<ruma::api::client::admin::lock_user::v1::Request, _, _>(admin::lock)
    .ruma::<room::get_summary::v1::Request, _, _>(room_summary::get_summary)
    .ruma::<ruma::api::client::dehydrated_device::put_dehydrated_device::unstable::Request, _, _>(dehydrated_device::put)
    .ruma::<ruma::api::client::dehydrated_device::get_dehydrated_device::unstable::Request, _, _>(dehydrated_device::get)
    .ruma::<ruma::api::client::dehydrated_device::delete_dehydrated_device::unstable::Request, _, _>(dehydrated_device::delete)
    .ruma::<ruma::api::client::dehydrated_device::get_events::unstable::Request, _, _>(dehydrated_device::events)
    .ruma::<ruma::api::client::peeking::get_current_state::v3::Request, _, _>(peeking::room_initial_sync)
    .ruma::<ruma::api::client::peeking::listen_to_new_events::v3::Request, _, _>(peeking::events)
    .ruma::<room::report_content::v3::Request, _, _>(reporting::report_event)
    .ruma::<room::report_room::v3::Request, _, _>(reporting::report_a_room)
    .ruma::<ruma::api::client::reporting::report_user::v3::Request, _, _>(reporting::report_a_user)
    // Devices
    .ruma::<device::get_devices::v3::Request, _, _>(device_management::get_devices)
    .ruma::<device::get_device::v3::Request, _, _>(device_management::get_device)
    .ruma::<device::update_device::v3::Request, _, _>(device_management::update_device)
    .ruma::<device::delete_device::v3::Request, _, _>(device_management::delete_device)
    .ruma::<device::delete_devices::v3::Request, _, _>(device_management::delete_devices)
    // End-to-end encryption
    .ruma::<e2ee_keys::upload_keys::v3::Request, _, _>(keys::upload_keys)
    .ruma::<e2ee_keys::get_keys::v3::Request, _, _>(keys::get_keys)
    .ruma::<e2ee_keys::claim_keys::v3::Request, _, _>(keys::claim_keys)
    .ruma::<e2ee_keys::get_key_changes::v3::Request, _, _>(keys::get_key_changes)
    .ruma::<e2ee_keys::upload_signing_keys::v3::Request, _, _>(cross_signing::upload_signing_keys)
    .ruma::<e2ee_keys::upload_signatures::v3::Request, _, _>(cross_signing::upload_signatures)
    .ruma::<backup::create_backup_version::v3::Request, _, _>(key_backup::create_backup_version)
    .ruma::<backup::get_latest_backup_info::v3::Request, _, _>(key_backup::get_latest_backup_info)
    .ruma::<backup::get_backup_info::v3::Request, _, _>(key_backup::get_backup_info)
    .ruma::<backup::update_backup_version::v3::Request, _, _>(key_backup::update_backup_version)
    .ruma::<backup::delete_backup_version::v3::Request, _, _>(key_backup::delete_backup_version)
    .ruma::<backup::add_backup_keys::v3::Request, _, _>(key_backup::add_backup_keys)
    .ruma::<backup::add_backup_keys_for_room::v3::Request, _, _>(key_backup::add_backup_keys_for_room)
    .ruma::<backup::add_backup_keys_for_session::v3::Request, _, _>(key_backup::add_backup_keys_for_session)
    .ruma::<backup::get_backup_keys::v3::Request, _, _>(key_backup::get_backup_keys)
    .ruma::<backup::get_backup_keys_for_room::v3::Request, _, _>(key_backup::get_backup_keys_for_room)
    .ruma::<backup::get_backup_keys_for_session::v3::Request, _, _>(key_backup::get_backup_keys_for_session)
    .ruma::<backup::delete_backup_keys::v3::Request, _, _>(key_backup::delete_backup_keys)
    .ruma::<backup::delete_backup_keys_for_room::v3::Request, _, _>(key_backup::delete_backup_keys_for_room)
    .ruma::<backup::delete_backup_keys_for_session::v3::Request, _, _>(key_backup::delete_backup_keys_for_session)
    // Profiles
    .ruma::<profiles::get_profile::v3::Request, _, _>(profile::get_profile)
    .ruma::<profiles::get_profile_field::v3::Request, _, _>(profile::get_profile_field)
    .ruma::<profiles::set_profile_field::v3::Request, _, _>(profile::set_profile_field)
    .ruma::<profiles::delete_profile_field::v3::Request, _, _>(profile::delete_profile_field)
    // Account data and filters
    .ruma::<config::get_global_account_data::v3::Request, _, _>(account_data::get_global)
    .ruma::<config::set_global_account_data::v3::Request, _, _>(account_data::set_global)
    .ruma::<config::get_room_account_data::v3::Request, _, _>(account_data::get_room)
    .ruma::<config::set_room_account_data::v3::Request, _, _>(account_data::set_room)
    .ruma::<filters::create_filter::v3::Request, _, _>(filter::create_filter)
    .ruma::<filters::get_filter::v3::Request, _, _>(filter::get_filter)
    // Sync
    .ruma::<syncing::sync_events::v3::Request, _, _>(sync::sync_events)
    .ruma::<syncing::sync_events::v5::Request, _, _>(sliding_sync::sync_events)
    // Rooms
    .ruma::<room::create_room::v3::Request, _, _>(create_room::create_room)
    .ruma::<membership::join_room_by_id::v3::Request, _, _>(joining::join_room_by_id)
    .ruma::<membership::join_room_by_id_or_alias::v3::Request, _, _>(joining::join_room_by_id_or_alias)
    .ruma::<membership::invite_user::v3::Request, _, _>(inviting::invite_user)
    .ruma::<membership::leave_room::v3::Request, _, _>(leaving::leave_room)
    .ruma::<membership::forget_room::v3::Request, _, _>(leaving::forget_room)
    .ruma::<membership::kick_user::v3::Request, _, _>(kicking::kick_user)
    .ruma::<membership::ban_user::v3::Request, _, _>(banning::ban_user)
    .ruma::<membership::unban_user::v3::Request, _, _>(banning::unban_user)
    .ruma::<membership::joined_rooms::v3::Request, _, _>(list_joined_rooms::joined_rooms)
    .ruma::<membership::joined_members::v3::Request, _, _>(rooms::joined_members)
    .ruma::<membership::get_member_events::v3::Request, _, _>(rooms::get_member_events)
    .ruma::<room::get_room_event::v3::Request, _, _>(rooms::get_room_event)
    .ruma::<state::get_state_events::v3::Request, _, _>(rooms::get_state_events)
    .ruma_empty_last::<state::get_state_event_for_key::v3::Request, _, _>(rooms::get_state_event_for_key)
    .ruma_empty_last::<state::send_state_event::v3::Request, _, _>(room_state::send_state_event)
    .ruma::<message::send_message_event::v3::Request, _, _>(room_send::send_message_event)
    .ruma::<message::get_message_events::v3::Request, _, _>(message_pagination::get_message_events)
    .ruma::<redact::redact_event::v3::Request, _, _>(redaction::redact_event)
    .ruma::<context::get_context::v3::Request, _, _>(event_context::get_context)
    .ruma::<relating::get_relating_events::v1::Request, _, _>(relations::get_relating_events)
    .ruma::<relating::get_relating_events_with_rel_type::v1::Request, _, _>(relations::get_relating_events_with_rel_type)
    .ruma::<relating::get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
        relations::get_relating_events_with_rel_type_and_event_type,
    )
    .ruma::<thread_roots::get_threads::v1::Request, _, _>(threads::get_threads)
    .ruma::<searching::search_events::v3::Request, _, _>(search::search)
    .ruma::<room::get_event_by_timestamp::v1::Request, _, _>(room_event_by_timestamp::get_event_by_timestamp)
    .ruma::<knock::knock_room::v3::Request, _, _>(knocking::knock_room)
    .ruma::<space::get_hierarchy::v1::Request, _, _>(space_hierarchy::get_hierarchy)
    .ruma::<room::upgrade_room::v3::Request, _, _>(room_upgrades::upgrade_room)
    .ruma::<read_marker::set_read_marker::v3::Request, _, _>(read_markers::set_read_marker)
    .ruma::<receipt::create_receipt::v3::Request, _, _>(receipts::create_receipt)
    .ruma::<typing_events::create_typing_event::v3::Request, _, _>(
        typing::create_typing_event.layer(axum::middleware::map_request(typing::default_timeout)),
    )
    .ruma::<tag::get_tags::v3::Request, _, _>(tags::get_tags)
    .ruma::<to_devices::send_event_to_device::v3::Request, _, _>(to_device::send_event_to_device)
    .ruma::<presence_status::get_presence::v3::Request, _, _>(presence::get_presence)
    // Push rules and notifications
    .ruma::<push::get_pushrules_all::v3::Request, _, _>(pushrules::get_pushrules_all)
    .ruma::<push::get_pushrules_global_scope::v3::Request, _, _>(pushrules::get_pushrules_global_scope)
    .ruma::<push::get_pushrule::v3::Request, _, _>(pushrules::get_pushrule)
    .ruma::<push::set_pushrule::v3::Request, _, _>(pushrules::set_pushrule)
    .ruma::<push::delete_pushrule::v3::Request, _, _>(pushrules::delete_pushrule)
    .ruma::<push::get_pushrule_enabled::v3::Request, _, _>(pushrules::get_pushrule_enabled)
    .ruma::<push::set_pushrule_enabled::v3::Request, _, _>(pushrules::set_pushrule_enabled)
    .ruma::<push::get_pushrule_actions::v3::Request, _, _>(pushrules::get_pushrule_actions)
    .ruma::<push::set_pushrule_actions::v3::Request, _, _>(pushrules::set_pushrule_actions)
    .ruma::<push::get_notifications::v3::Request, _, _>(notifications::get_notifications)
    .ruma::<push::get_pushers::v3::Request, _, _>(pusher::get_pushers)
    .ruma::<push::set_pusher::v3::Request, _, _>(pusher::set_pusher)
    .ruma::<presence_status::set_presence::v3::Request, _, _>(presence::set_presence)
    .ruma::<ruma::api::client::voip::get_turn_server_info::v3::Request, _, _>(voip::get_turn_server)
    // Bridged networks
    .ruma::<ruma::api::client::appservice::request_ping::v1::Request, _, _>(appservice::request_ping)
    .ruma::<ruma::api::client::appservice::set_room_visibility::v3::Request, _, _>(appservice::set_room_visibility)
    .ruma::<thirdparty::get_protocols::v3::Request, _, _>(third_party_lookup::get_protocols)
    .ruma::<thirdparty::get_protocol::v3::Request, _, _>(third_party_lookup::get_protocol)
    .ruma::<thirdparty::get_location_for_protocol::v3::Request, _, _>(third_party_lookup::get_location_for_protocol)
    .ruma::<thirdparty::get_user_for_protocol::v3::Request, _, _>(third_party_lookup::get_user_for_protocol)
    .ruma::<thirdparty::get_location_for_room_alias::v3::Request, _, _>(third_party_lookup::get_location_for_room_alias)
    .ruma::<thirdparty::get_user_for_user_id::v3::Request, _, _>(third_party_lookup::get_user_for_user_id)
    .ruma::<tag::create_tag::v3::Request, _, _>(tags::create_tag)
    .ruma::<tag::delete_tag::v3::Request, _, _>(tags::delete_tag)
    .ruma::<user_directory::search_users::v3::Request, _, _>(users::search_users)
    // Aliases and the room directory
    .ruma::<alias::create_alias::v3::Request, _, _>(directory::create_alias)
    .ruma::<alias::get_alias::v3::Request, _, _>(directory::get_alias)
    .ruma::<alias::delete_alias::v3::Request, _, _>(directory::delete_alias)
    .ruma::<room::aliases::v3::Request, _, _>(directory::room_aliases)
    .ruma::<room_directory::get_public_rooms::v3::Request, _, _>(list_public_rooms::get_public_rooms)
    .ruma::<room_directory::get_public_rooms_filtered::v3::Request, _, _>(list_public_rooms::get_public_rooms_filtered)
    .ruma::<room_directory::get_room_visibility::v3::Request, _, _>(list_public_rooms::get_room_visibility)
    .ruma::<room_directory::set_room_visibility::v3::Request, _, _>(list_public_rooms::set_room_visibility)
    // Media
    .ruma::<authenticated_media::get_media_config::v1::Request, _, _>(content_repo::get_media_config)
    .ruma::<authenticated_media::get_content::v1::Request, _, _>(content_repo::get_content)
    .ruma::<authenticated_media::get_content_as_filename::v1::Request, _, _>(content_repo::get_content_as_filename)
    .ruma::<authenticated_media::get_content_thumbnail::v1::Request, _, _>(content_repo::get_content_thumbnail)
    .ruma::<authenticated_media::get_media_preview::v1::Request, _, _>(content_repo::get_media_preview)
    .ruma::<legacy_media::get_media_config::v3::Request, _, _>(content_repo::legacy_get_media_config)
    .ruma::<legacy_media::create_content::v3::Request, _, _>(content_repo::create_content)
    .ruma::<legacy_media::create_mxc_uri::v1::Request, _, _>(content_repo::create_mxc_uri)
    .ruma::<legacy_media::create_content_async::v3::Request, _, _>(content_repo::create_content_async)
    .ruma::<legacy_media::get_content::v3::Request, _, _>(content_repo::legacy_get_content)
    .ruma::<legacy_media::get_content_as_filename::v3::Request, _, _>(content_repo::legacy_get_content_as_filename)
    .ruma::<legacy_media::get_content_thumbnail::v3::Request, _, _>(content_repo::legacy_get_content_thumbnail)
    .ruma::<legacy_media::get_media_preview::v3::Request, _, _>(content_repo::legacy_get_media_preview)
    // Federation
    .ruma::<get_server_keys::v2::Request, _, _>(federation::keys::get_server_keys)
    .ruma::<get_remote_server_keys::v2::Request, _, _>(federation::keys::get_remote_server_keys)
    .ruma::<get_remote_server_keys_batch::v2::Request, _, _>(federation::keys::get_remote_server_keys_batch)
    .ruma::<get_server_version::v1::Request, _, _>(federation::version::get_server_version)
    .ruma::<get_profile_information::v1::Request, _, _>(federation::query::get_profile_information)
    .ruma::<get_room_information::v1::Request, _, _>(federation::query::get_room_information)
    .ruma::<federation_space::get_hierarchy::v1::Request, _, _>(federation::space::get_hierarchy)
    .ruma::<federation_directory::get_public_rooms::v1::Request, _, _>(federation::directory::get_public_rooms)
    .ruma::<federation_directory::get_public_rooms_filtered::v1::Request, _, _>(federation::directory::get_public_rooms_filtered)
    .ruma::<send_transaction_message::v1::Request, _, _>(federation::transactions::send_transaction_message)
    .ruma::<prepare_join_event::v1::Request, _, _>(federation::membership::prepare_join_event)
    .ruma::<create_join_event::v2::Request, _, _>(federation::membership::create_join_event)
    .ruma::<prepare_leave_event::v1::Request, _, _>(federation::membership::prepare_leave_event)
    .ruma::<create_leave_event::v2::Request, _, _>(federation::membership::create_leave_event)
    .ruma::<create_invite::v2::Request, _, _>(federation::membership::create_invite)
    .ruma::<prepare_knock_event::v1::Request, _, _>(federation::membership::prepare_knock_event)
    .ruma::<create_knock_event::v1::Request, _, _>(federation::membership::create_knock_event)
    .ruma::<get_event::v1::Request, _, _>(federation::history::get_event)
    .ruma::<get_missing_events::v1::Request, _, _>(federation::history::get_missing_events)
    .ruma::<get_backfill::v1::Request, _, _>(federation::history::get_backfill)
    .ruma::<get_room_state_ids::v1::Request, _, _>(federation::history::get_room_state_ids)
    .ruma::<get_room_state::v1::Request, _, _>(federation::history::get_room_state)
    .ruma::<get_event_authorization::v1::Request, _, _>(federation::history::get_event_authorization)
    .ruma::<federation_event::get_event_by_timestamp::v1::Request, _, _>(federation::history::get_event_by_timestamp)
    .ruma::<federation_device::get_devices::v1::Request, _, _>(federation::e2ee::get_devices)
    .ruma::<federation_keys::get_keys::v1::Request, _, _>(federation::e2ee::get_keys)
    .ruma::<federation_keys::claim_keys::v1::Request, _, _>(federation::e2ee::claim_keys)
    .ruma::<federation_media::get_content::v1::Request, _, _>(federation::media::get_content)
    .ruma::<get_openid_userinfo::v1::Request, _, _>(federation::openid::get_openid_userinfo)
    .ruma::<federation_media::get_content_thumbnail::v1::Request, _, _>(federation::media::get_content_thumbnail)
    // The identity service, built in
    .ruma::<is::discovery::get_supported_versions::Request, _, _>(identity::status::versions)
    .ruma::<is::discovery::get_server_status::v2::Request, _, _>(identity::status::status)
    .ruma::<is::authentication::register::v2::Request, _, _>(identity::auth::register)
    .ruma::<is::authentication::get_account_information::v2::Request, _, _>(identity::auth::account)
    .ruma::<is::authentication::logout::v2::Request, _, _>(identity::auth::logout)
    .ruma::<is::tos::get_terms_of_service::v2::Request, _, _>(identity::terms::get_terms)
    .ruma::<is::tos::accept_terms_of_service::v2::Request, _, _>(identity::terms::accept_terms)
    .ruma::<is::lookup::get_hash_parameters::v2::Request, _, _>(identity::lookup::hash_details)
    .ruma::<is::lookup::lookup_3pid::v2::Request, _, _>(identity::lookup::lookup)
    .ruma::<is::invitation::store_invitation::v2::Request, _, _>(identity::invitations::store_invite)
    .ruma::<is::invitation::sign_invitation_ed25519::v2::Request, _, _>(identity::invitations::sign_ed25519)
    .ruma::<is::keys::check_public_key_validity::v2::Request, _, _>(identity::pubkey::is_valid)
    .ruma::<is::keys::validate_ephemeral_key::v2::Request, _, _>(identity::pubkey::ephemeral_is_valid)
    .ruma::<is::keys::get_public_key::v2::Request, _, _>(identity::pubkey::get_public_key)
    .ruma::<is::association::email::create_email_validation_session::v2::Request, _, _>(identity::associations::request_token)
    .ruma::<is::association::email::validate_email::v2::Request, _, _>(identity::associations::submit_token)
    .ruma::<is::association::email::validate_email_by_end_user::v2::Request, _, _>(identity::associations::submit_token_by_link)
    // Hearth's own
    .get("/_hearth/email/confirm", super::hearth::pages::confirm_email)
    .get("/_hearth/invite/{secret}", super::hearth::pages::invite_page)
    .post("/_hearth/invite/{secret}", super::hearth::pages::accept_invite)
    .get("/_hearth/health/live", super::hearth::health::live)
    .get("/_hearth/health/ready", super::hearth::health::ready)
}

/// The router with the answers for everything else: 404 and 405 `M_UNRECOGNIZED`.
pub fn router() -> AppRouter {
    routes()
        .router
        .fallback(|| async { Error::unrecognized("Unrecognized request") })
        .method_not_allowed_fallback(|| async { Error::method_not_allowed("Method not allowed") })
}
