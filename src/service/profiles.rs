//! User profiles: display name, avatar URL and the other profile fields of the spec.

use ruma::UserId;
use ruma::profile::{ProfileFieldName, ProfileFieldValue, UserProfile};

use crate::error::{Error, Result};
use crate::store::{Store, Table};

/// Largest profile, encoded, as the spec allows (64 KiB).
const MAX_PROFILE_BYTES: usize = 65536;

/// The profiles of this server's users.
pub struct Profiles {
    store: Store,
}

impl Profiles {
    pub fn new(store: Store) -> Profiles {
        Profiles { store }
    }

    /// A user's whole profile (empty if never set).
    pub fn get(&self, user_id: &UserId) -> Result<UserProfile> {
        Ok(self.store.get_json(Table::Profiles, user_id.as_bytes())?.unwrap_or_default())
    }

    /// Sets one field.
    pub fn set_field(&self, user_id: &UserId, value: ProfileFieldValue) -> Result<()> {
        let mut profile = self.get(user_id)?;
        profile.set(value.field_name().to_string(), value.value().into_owned());
        if serde_json::to_vec(&profile)?.len() > MAX_PROFILE_BYTES {
            return Err(Error::too_large("The profile would exceed 64 KiB"));
        }
        self.write(user_id, &profile)
    }

    /// Removes one field.
    pub fn delete_field(&self, user_id: &UserId, field: &ProfileFieldName) -> Result<()> {
        let mut profile = self.get(user_id)?;
        profile.remove(field.as_str());
        self.write(user_id, &profile)
    }

    fn write(&self, user_id: &UserId, profile: &UserProfile) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put_json(Table::Profiles, user_id.as_bytes(), profile);
        Ok(batch.commit()?)
    }
}
