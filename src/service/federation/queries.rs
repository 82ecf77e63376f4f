//! Queries of other servers: a user's profile (`query/profile`) and a room alias
//! (`query/directory`), asked of the server the user or alias belongs to.

use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::profile::{ProfileFieldName, UserProfile};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, UserId};

use super::Federation;
use crate::error::Result;

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
