//! Queries of other servers: a user's profile (`query/profile`), a room alias
//! (`query/directory`), asked of the server the user or alias belongs to, and a server's public
//! room directory (`publicRooms`) and the rooms of its spaces (`hierarchy`).

use ruma::api::federation::directory::get_public_rooms_filtered;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::api::federation::space::get_hierarchy;
use ruma::profile::{ProfileFieldName, UserProfile};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UInt, UserId};

use super::Federation;
use crate::error::{Error, Result};
use crate::service::rooms::directory::DirectoryPage;
use crate::service::rooms::spaces::HierarchyRoom;

impl Federation {
    /// The profile of a user of another server (only `field` when given).
    pub async fn remote_profile(&self, user_id: &UserId, field: Option<ProfileFieldName>) -> Result<UserProfile> {
        let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
        request.field = field;
        Ok(self.send(user_id.server_name(), request).await?.data)
    }

    /// The room an alias of another server names, and servers in it.
    pub async fn remote_alias(&self, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let response = self.send(alias.server_name(), request).await?;
        Ok((response.room_id, response.servers))
    }
}

impl Federation {
    /// A page of another server's public room directory.
    pub async fn remote_public_rooms(
        &self,
        server: &ServerName,
        search: Option<&str>,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<DirectoryPage> {
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = limit;
        request.since = since.map(str::to_owned);
        request.filter.generic_search_term = search.map(str::to_owned);
        let answer = self.send(server, request).await?;
        Ok(DirectoryPage {
            total: answer
                .total_room_count_estimate
                .map_or(answer.chunk.len(), |n| u64::from(n) as usize),
            chunk: answer.chunk,
            next_batch: answer.next_batch,
            prev_batch: answer.prev_batch,
        })
    }
}

impl Federation {
    /// A room of another server's space hierarchy, asked of the first of `servers` that
    /// answers: the room with its `m.space.child` events, then its direct children.
    pub async fn remote_hierarchy(
        &self,
        servers: &[OwnedServerName],
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<Vec<HierarchyRoom>> {
        let mut last_error = Error::not_found("No server could be asked about this room");
        for server in servers.iter().filter(|server| **server != self.server_name) {
            let mut request = get_hierarchy::v1::Request::new(room_id.to_owned());
            request.suggested_only = suggested_only;
            match self.send(server, request).await {
                Ok(answer) => {
                    let mut rooms = vec![HierarchyRoom {
                        summary: serde_json::to_value(&answer.room.summary)?,
                        children_state: answer
                            .room
                            .children_state
                            .iter()
                            .filter_map(|event| serde_json::from_str(event.json().get()).ok())
                            .collect(),
                    }];
                    for child in &answer.children {
                        rooms.push(HierarchyRoom {
                            summary: serde_json::to_value(child)?,
                            children_state: Vec::new(),
                        });
                    }
                    return Ok(rooms);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}
