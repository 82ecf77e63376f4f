//! `GET /rooms/{roomId}/threads`: a room's thread roots, most recently replied to first, each
//! with its thread summary bundled. A page token is `t<N>`: the threads whose latest reply is
//! at stream position N or before.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::threads::get_threads::v1::{IncludeThreads, Request, Response};

use super::message_pagination::{parse_token, token};
use super::rooms::raw;
use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;
use crate::service::rooms::visibility::Viewer;

/// Threads per page unless the client asks otherwise, and the most it may ask for.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`
pub async fn get_threads(State(services): State<Arc<Services>>, req: Ruma<Request>) -> HandlerResult<Response> {
    let session = req.session()?;
    let request = &req.body;
    let user = &session.user_id;
    services.rooms.check_can_read_room(&request.room_id, user)?;
    let limit = request.limit.map_or(DEFAULT_LIMIT, |l| u64::from(l) as usize).clamp(1, MAX_LIMIT);
    let participated_only = request.include == IncludeThreads::Participated;
    let mut cursor = request.from.as_deref().map(parse_token).transpose()?;
    let mut chunk = Vec::new();
    let mut next_batch = None;
    'pages: loop {
        let threads = services.rooms.threads(&request.room_id, cursor, limit)?;
        let exhausted = threads.len() <= limit;
        for (position, root_id) in threads {
            if chunk.len() == limit {
                next_batch = Some(token(position));
                break 'pages;
            }
            cursor = position.checked_sub(1);
            let Some(stored) = services.rooms.stored_event(&root_id)? else {
                continue;
            };
            if !services.rooms.can_see_event(user, &stored)? {
                continue;
            }
            // The bundled thread summary says whether the user took part.
            let root = services
                .rooms
                .client_event(&root_id, &stored, Some(Viewer::device(user, &session.device_id)))?;
            let participated = root
                .unsigned
                .relations
                .as_ref()
                .is_some_and(|relations| relations["m.thread"]["current_user_participated"] == true);
            if participated_only && !participated {
                continue;
            }
            chunk.push(raw(&root)?);
        }
        if exhausted || cursor.is_none() {
            break;
        }
    }
    let mut response = Response::new(chunk);
    response.next_batch = next_batch;
    Ok(RumaResponse(response))
}
