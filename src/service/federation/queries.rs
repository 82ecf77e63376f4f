//! Queries of other servers: a user's profile (`query/profile`), a room alias
//! (`query/directory`), asked of the server the user or alias belongs to, and a server's public
//! room directory (`publicRooms`).

use ruma::api::federation::directory::get_public_rooms_filtered;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::profile::{ProfileFieldName, UserProfile};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, ServerName, UInt, UserId};

use super::Federation;
use crate::error::Result;
use crate::service::rooms::directory::DirectoryPage;

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
