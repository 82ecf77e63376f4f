//! End-to-end encryption keys: each device's identity keys, its one-time and fallback keys,
//! each user's cross-signing keys and the signatures users make over them, and the stream of
//! device-list changes that tells everyone who shares a room with a user to fetch their keys
//! again.
//!
//! The server never reads a key: it stores what clients upload, hands one-time keys out once,
//! and checks the signatures that decide who trusts whom (a self-signing key over a device, a
//! master key over its sub-keys, a user-signing key over another user's master key).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ruma::api::client::keys::claim_keys::v3::OneTimeKeys;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::room::member::MembershipState;
use ruma::serde::Base64;
use ruma::serde::base64::Standard;
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use ruma::{DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedRoomId, OwnedUserId, SigningKeyAlgorithm, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Services;
use super::appservices::Appservices;
use super::rooms::Rooms;
use super::stream::{Stream, Ticket};
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table, key, prefix};

/// The three cross-signing keys of a user, by their `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSigningUsage {
    Master,
    SelfSigning,
    UserSigning,
}

impl CrossSigningUsage {
    pub fn as_str(self) -> &'static str {
        match self {
            CrossSigningUsage::Master => "master",
            CrossSigningUsage::SelfSigning => "self_signing",
            CrossSigningUsage::UserSigning => "user_signing",
        }
    }
}

/// A fallback key as stored in `fallback_keys`: handed out whenever the one-time keys run out,
/// until the device uploads a new one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FallbackKey {
    key_id: OwnedOneTimeKeyId,
    key: Value,
    used: bool,
}

/// Why a signature upload was refused: (errcode, error).
pub type SignatureFailure = (String, String);

/// The refused signature uploads, by user and key.
pub type SignatureFailures = BTreeMap<OwnedUserId, BTreeMap<String, SignatureFailure>>;

/// The signatures over an uploaded key that verify, as (signer's key ID, signature), or why
/// none is taken.
type VerifiedSignatures = std::result::Result<Vec<(String, Value)>, SignatureFailure>;

/// Device-list stream IDs told to other servers are the stream position times this, plus the
/// index of the device in the change (a deletion of several devices is one update each).
const DEVICES_PER_CHANGE: u64 = 1000;

/// What changed in a user's keys, for the other servers that share a room with them.
#[derive(Debug, Clone, Copy)]
pub enum KeyChange<'a> {
    /// A device's keys were added or changed: its keys now.
    Device(&'a DeviceId, &'a Value),
    /// Devices were deleted.
    Deleted(&'a [OwnedDeviceId]),
    /// Cross-signing keys or signatures.
    CrossSigning,
    /// Another server's user's devices or keys, as their server told.
    Remote,
}

/// The device-list changes a user should hear of.
#[derive(Debug, Default)]
pub struct DeviceListUpdates {
    /// Users whose devices or keys changed, or who newly share a room with the viewer.
    pub changed: BTreeSet<OwnedUserId>,
    /// Users who no longer share any room with the viewer.
    pub left: BTreeSet<OwnedUserId>,
}

/// The key store of this server's users.
pub struct Keys {
    store: Store,
    stream: Arc<Stream>,
    /// Bridges that get their users' key counts and device-list changes (MSC3202).
    appservices: Arc<Appservices>,
    /// Serializes claims, so one one-time key is never handed to two claimers.
    claiming: Mutex<()>,
}

/// The one ed25519 key of a cross-signing key object, as (key ID, public key).
fn cross_signing_public_key(object: &Value) -> Option<(String, String)> {
    let keys = object.get("keys")?.as_object()?;
    let (key_id, public_key) = keys.iter().next()?;
    Some((key_id.clone(), public_key.as_str()?.to_owned()))
}

/// Whether `signer`'s key `key_id` (public key `public_key`) signed `object`.
fn signed_by(object: &Value, signer: &UserId, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object["signatures"][signer.as_str()][key_id].as_str() else {
        return false;
    };
    let (Ok(signature), Ok(public_key)) = (Base64::<Standard>::parse(signature), Base64::<Standard>::parse(public_key)) else {
        return false;
    };
    let Ok(canonical) = serde_json::from_value::<CanonicalJsonObject>(object.clone())
        .map_err(|_| ())
        .and_then(|object| to_canonical_json_string_for_signing(&object).map_err(|_| ()))
    else {
        return false;
    };
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        canonical.as_bytes(),
    )
    .is_ok()
}

/// An object without its `signatures` and `unsigned`: what a signature covers.
fn signed_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    object
}

impl Keys {
    pub fn new(store: Store, stream: Arc<Stream>, appservices: Arc<Appservices>) -> Keys {
        Keys {
            store,
            stream,
            appservices,
            claiming: Mutex::new(()),
        }
    }

    // ----- device keys, one-time and fallback keys -----

    /// Stores a device's uploads: its identity keys (replacing earlier ones), new one-time keys
    /// (a key ID uploaded again must carry the same key) and fallback keys (replacing the
    /// device's fallback key of that algorithm). A change of identity keys is a device-list
    /// change.
    pub fn upload(
        &self,
        rooms: &Rooms,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<Value>,
        one_time_keys: BTreeMap<OwnedOneTimeKeyId, Value>,
        fallback_keys: BTreeMap<OwnedOneTimeKeyId, Value>,
    ) -> Result<()> {
        let mut batch = self.store.batch();
        if !one_time_keys.is_empty() || !fallback_keys.is_empty() {
            self.appservices.queue_key_counts(&mut batch, user, device)?;
        }
        let mut changed_keys = None;
        if let Some(device_keys) = device_keys {
            if device_keys["user_id"].as_str() != Some(user.as_str()) || device_keys["device_id"].as_str() != Some(device.as_str()) {
                return Err(Error::invalid_param("device_keys must name the uploading user and device"));
            }
            let row = key(&[user.as_bytes(), device.as_bytes()]);
            let stored: Option<Value> = self.store.get_json(Table::DeviceKeys, &row)?;
            if stored.as_ref() != Some(&device_keys) {
                if stored.as_ref().map(signed_part) != Some(signed_part(&device_keys)) {
                    // New identity keys: signatures over the old ones no longer hold.
                    for signature in self
                        .store
                        .scan_keys(Table::KeySignatures, &prefix(&[user.as_bytes(), device.as_bytes()]))?
                    {
                        batch.delete(Table::KeySignatures, &signature);
                    }
                }
                batch.put_json(Table::DeviceKeys, &row, &device_keys);
                changed_keys = Some(device_keys);
            }
        }
        for (key_id, one_time_key) in one_time_keys {
            let row = key(&[user.as_bytes(), device.as_bytes(), key_id.as_bytes()]);
            match self.store.get_json::<Value>(Table::OneTimeKeys, &row)? {
                Some(existing) if existing != one_time_key => {
                    return Err(Error::bad_request(format!("One-time key {key_id} already exists with another key")));
                }
                Some(_) => {}
                None => batch.put_json(Table::OneTimeKeys, &row, &one_time_key),
            }
        }
        for (key_id, fallback_key) in fallback_keys {
            let row = key(&[user.as_bytes(), device.as_bytes(), key_id.algorithm().as_str().as_bytes()]);
            let stored: Option<FallbackKey> = self.store.get_json(Table::FallbackKeys, &row)?;
            // The same key again keeps its used flag; a new key is unused.
            if stored
                .as_ref()
                .is_none_or(|stored| stored.key_id != key_id || stored.key != fallback_key)
            {
                let record = FallbackKey {
                    key_id,
                    key: fallback_key,
                    used: false,
                };
                batch.put_json(Table::FallbackKeys, &row, &record);
            }
        }
        if let Some(keys) = &changed_keys {
            self.commit_device_list_change(rooms, batch, user, KeyChange::Device(device, keys))
        } else {
            Ok(batch.commit()?)
        }
    }

    /// How many unclaimed one-time keys a device has, per algorithm (always with
    /// `signed_curve25519`, which clients watch to top their keys up).
    pub fn one_time_key_counts(&self, user: &UserId, device: &DeviceId) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        let device_prefix = prefix(&[user.as_bytes(), device.as_bytes()]);
        let mut counts = BTreeMap::from([(OneTimeKeyAlgorithm::SignedCurve25519, UInt::MIN)]);
        for row in self.store.scan_keys(Table::OneTimeKeys, &device_prefix)? {
            let key_id = String::from_utf8_lossy(&row[device_prefix.len()..]).into_owned();
            if let Some((algorithm, _)) = key_id.split_once(':') {
                let count = counts.entry(OneTimeKeyAlgorithm::from(algorithm)).or_insert(UInt::MIN);
                *count = count.saturating_add(UInt::from(1u8));
            }
        }
        Ok(counts)
    }

    /// The algorithms for which a device has a fallback key nobody has claimed yet.
    pub fn unused_fallback_key_types(&self, user: &UserId, device: &DeviceId) -> Result<Vec<OneTimeKeyAlgorithm>> {
        let rows = self
            .store
            .scan_json::<FallbackKey>(Table::FallbackKeys, &prefix(&[user.as_bytes(), device.as_bytes()]))?;
        Ok(rows
            .into_iter()
            .filter(|(_, record)| !record.used)
            .map(|(_, record)| record.key_id.algorithm())
            .collect())
    }

    /// Hands out one key per requested device: a one-time key, deleted as it goes, or the
    /// device's fallback key when none is left. Devices without either are left out.
    pub fn claim(
        &self,
        requests: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
    ) -> Result<BTreeMap<OwnedUserId, OneTimeKeys>> {
        let _claiming = self.claiming.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = self.store.batch();
        let mut claimed: BTreeMap<OwnedUserId, OneTimeKeys> = BTreeMap::new();
        for (user, devices) in requests {
            for (device, algorithm) in devices {
                let device_prefix = prefix(&[user.as_bytes(), device.as_bytes()]);
                let algorithm_prefix = [&device_prefix[..], algorithm.as_str().as_bytes(), b":"].concat();
                let one_time = self
                    .store
                    .range(Table::OneTimeKeys, &algorithm_prefix, &algorithm_prefix, true, 1)?;
                let (key_id, one_time_key) = match one_time.into_iter().next() {
                    Some((row, value)) => {
                        batch.delete(Table::OneTimeKeys, &row);
                        let key_id = String::from_utf8_lossy(&row[device_prefix.len()..]).into_owned();
                        (key_id, serde_json::from_slice::<Value>(&value)?)
                    }
                    None => {
                        let row = key(&[user.as_bytes(), device.as_bytes(), algorithm.as_str().as_bytes()]);
                        let Some(mut fallback) = self.store.get_json::<FallbackKey>(Table::FallbackKeys, &row)? else {
                            continue;
                        };
                        if !fallback.used {
                            fallback.used = true;
                            batch.put_json(Table::FallbackKeys, &row, &fallback);
                        }
                        (fallback.key_id.to_string(), fallback.key)
                    }
                };
                let Ok(key_id) = OwnedOneTimeKeyId::try_from(key_id) else {
                    continue;
                };
                self.appservices.queue_key_counts(&mut batch, user, device)?;
                claimed
                    .entry(user.clone())
                    .or_default()
                    .entry(device.clone())
                    .or_default()
                    .insert(key_id, ruma::serde::Raw::new(&one_time_key)?.cast_unchecked());
            }
        }
        batch.commit()?;
        Ok(claimed)
    }

    /// The identity keys of a user's devices (only those that uploaded keys), with the
    /// signatures `viewer` may see and each device's display name.
    pub fn device_keys(
        &self,
        user: &UserId,
        viewer: &UserId,
        devices: &[OwnedDeviceId],
        names: &HashMap<OwnedDeviceId, Option<String>>,
    ) -> Result<BTreeMap<OwnedDeviceId, Value>> {
        let user_prefix = prefix(&[user.as_bytes()]);
        let mut out = BTreeMap::new();
        for (row, mut keys) in self.store.scan_json::<Value>(Table::DeviceKeys, &user_prefix)? {
            let device = OwnedDeviceId::from(String::from_utf8_lossy(&row[user_prefix.len()..]).as_ref());
            if !devices.is_empty() && !devices.contains(&device) {
                continue;
            }
            self.merge_signatures(&mut keys, user, device.as_str(), viewer)?;
            out.insert(device.clone(), with_display_name(keys, names.get(&device).cloned().flatten()));
        }
        Ok(out)
    }

    /// Adds to `batch` the removal of every key of a device (identity, one-time and fallback
    /// keys, and signatures over them).
    pub fn stage_delete_device(&self, batch: &mut Batch<'_>, user: &UserId, device: &DeviceId) -> Result<()> {
        batch.delete(Table::DeviceKeys, &key(&[user.as_bytes(), device.as_bytes()]));
        let device_prefix = prefix(&[user.as_bytes(), device.as_bytes()]);
        for table in [Table::OneTimeKeys, Table::FallbackKeys, Table::KeySignatures] {
            for row in self.store.scan_keys(table, &device_prefix)? {
                batch.delete(table, &row);
            }
        }
        Ok(())
    }

    // ----- cross-signing -----

    /// A user's cross-signing key of one usage as uploaded, without others' signatures.
    fn stored_cross_signing_key(&self, user: &UserId, usage: CrossSigningUsage) -> Result<Option<Value>> {
        Ok(self
            .store
            .get_json(Table::CrossSigningKeys, &key(&[user.as_bytes(), usage.as_str().as_bytes()]))?)
    }

    /// A user's cross-signing key of one usage, with the signatures `viewer` may see.
    pub fn cross_signing_key(&self, user: &UserId, usage: CrossSigningUsage, viewer: &UserId) -> Result<Option<Value>> {
        let Some(mut object) = self.stored_cross_signing_key(user, usage)? else {
            return Ok(None);
        };
        if let Some((_, public_key)) = cross_signing_public_key(&object) {
            self.merge_signatures(&mut object, user, &public_key, viewer)?;
        }
        Ok(Some(object))
    }

    /// A cross-signing key (of another server's user, as their server gave it) with the
    /// signatures `viewer` made over it here.
    pub fn with_signatures_of(&self, mut object: Value, owner: &UserId, viewer: &UserId) -> Result<Value> {
        if let Some((_, public_key)) = cross_signing_public_key(&object) {
            self.merge_signatures(&mut object, owner, &public_key, viewer)?;
        }
        Ok(object)
    }

    /// Whether uploading these keys would replace keys the user has (which needs the user's
    /// password): uploading the keys the user already has, or the first keys, does not.
    pub fn replaces_cross_signing_keys(&self, user: &UserId, uploads: &[(CrossSigningUsage, &Value)]) -> Result<bool> {
        if self.stored_cross_signing_key(user, CrossSigningUsage::Master)?.is_none() {
            return Ok(false);
        }
        for (usage, object) in uploads {
            let stored = self.stored_cross_signing_key(user, *usage)?;
            if stored.as_ref().map(signed_part) != Some(signed_part(object)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks uploaded cross-signing keys: each must be the user's, of its usage, with one
    /// ed25519 key; the self-signing and user-signing keys must be signed by the master key
    /// (the one uploaded with them, or the stored one).
    pub fn check_cross_signing_keys(&self, user: &UserId, uploads: &[(CrossSigningUsage, &Value)]) -> Result<()> {
        for (usage, object) in uploads {
            let usage = usage.as_str();
            let usages = object["usage"].as_array().map(Vec::as_slice).unwrap_or_default();
            if object["user_id"].as_str() != Some(user.as_str()) || !usages.iter().any(|u| u.as_str() == Some(usage)) {
                return Err(Error::invalid_param(format!(
                    "The {usage} key must be the uploader's, with usage {usage}"
                )));
            }
            if cross_signing_public_key(object).is_none_or(|(key_id, public_key)| key_id != format!("ed25519:{public_key}")) {
                return Err(Error::invalid_param(format!("The {usage} key must hold one ed25519 key")));
            }
        }
        let master = match uploads.iter().find(|(usage, _)| *usage == CrossSigningUsage::Master) {
            Some((_, object)) => Some((*object).clone()),
            None => self.stored_cross_signing_key(user, CrossSigningUsage::Master)?,
        };
        let Some((master_key_id, master_public)) = master.as_ref().and_then(cross_signing_public_key) else {
            return Err(Error::invalid_param("A master key must be uploaded first"));
        };
        for (usage, object) in uploads {
            if *usage != CrossSigningUsage::Master && !signed_by(object, user, &master_key_id, &master_public) {
                return Err(Error::invalid_param(format!(
                    "The {} key is not signed by the master key",
                    usage.as_str()
                )));
            }
        }
        Ok(())
    }

    /// Stores cross-signing keys that passed [`Keys::check_cross_signing_keys`].
    pub fn upload_cross_signing_keys(&self, rooms: &Rooms, user: &UserId, uploads: &[(CrossSigningUsage, &Value)]) -> Result<()> {
        let mut batch = self.store.batch();
        for (usage, object) in uploads {
            batch.put_json(Table::CrossSigningKeys, &key(&[user.as_bytes(), usage.as_str().as_bytes()]), object);
        }
        self.commit_device_list_change(rooms, batch, user, KeyChange::CrossSigning)
    }

    /// Stores the signatures `signer` made: over their own devices with their self-signing
    /// key, over their own master key with a device, over other users' master keys with
    /// their user-signing key. Only signatures that verify are kept; an object without one is
    /// a failure.
    pub fn upload_signatures(
        &self,
        rooms: &Rooms,
        signer: &UserId,
        signed: Vec<(OwnedUserId, String, Value)>,
    ) -> Result<SignatureFailures> {
        let mut failures = SignatureFailures::new();
        let mut batch = self.store.batch();
        let mut stored_any = false;
        for (target, key_id, object) in signed {
            let remote_target = target.server_name() != rooms.server_name();
            match self.verified_signatures(signer, (&target, remote_target), &key_id, &object)? {
                Ok(verified) => {
                    for (signer_key, signature) in verified {
                        let row = key(&[target.as_bytes(), key_id.as_bytes(), signer.as_bytes(), signer_key.as_bytes()]);
                        batch.put_json(Table::KeySignatures, &row, &signature);
                        stored_any = true;
                    }
                }
                Err((errcode, error)) => {
                    failures.entry(target).or_default().insert(key_id, (errcode, error));
                }
            }
        }
        if stored_any {
            self.commit_device_list_change(rooms, batch, signer, KeyChange::CrossSigning)?;
        }
        Ok(failures)
    }

    /// The keys of `signer` that may sign `target`'s key `key_id` (a device ID or a master
    /// public key), as (key ID, public key).
    fn signing_keys_for(&self, signer: &UserId, target: &UserId, key_id: &str) -> Result<Vec<(String, String)>> {
        let is_own_master = signer == target
            && self
                .stored_cross_signing_key(signer, CrossSigningUsage::Master)?
                .as_ref()
                .and_then(cross_signing_public_key)
                .is_some_and(|(_, public_key)| public_key == key_id);
        if is_own_master {
            // A device vouching for its user's master key.
            let mut device_keys = Vec::new();
            for (_, keys) in self.store.scan_json::<Value>(Table::DeviceKeys, &prefix(&[signer.as_bytes()]))? {
                let Some(device) = keys["device_id"].as_str() else { continue };
                let id = format!("ed25519:{device}");
                if let Some(public_key) = keys["keys"][&id].as_str() {
                    device_keys.push((id, public_key.to_owned()));
                }
            }
            return Ok(device_keys);
        }
        let usage = if signer == target {
            CrossSigningUsage::SelfSigning
        } else {
            CrossSigningUsage::UserSigning
        };
        Ok(self
            .stored_cross_signing_key(signer, usage)?
            .as_ref()
            .and_then(cross_signing_public_key)
            .into_iter()
            .collect())
    }

    /// Checks that an uploaded object is the key it claims to be (a device's keys or a master
    /// key) and returns the signatures of `signer` over it that verify, as (signer's key ID,
    /// signature); or the failure, when it is not the stored key or none verifies.
    fn verified_signatures(
        &self,
        signer: &UserId,
        (target, remote_target): (&UserId, bool),
        key_id: &str,
        object: &Value,
    ) -> Result<VerifiedSignatures> {
        let invalid = |error: &str| Ok(Err(("M_INVALID_SIGNATURE".to_owned(), error.to_owned())));
        let stored = if signer == target
            && let Some(device_keys) = self
                .store
                .get_json::<Value>(Table::DeviceKeys, &key(&[target.as_bytes(), key_id.as_bytes()]))?
        {
            device_keys
        } else {
            match self.stored_cross_signing_key(target, CrossSigningUsage::Master)? {
                Some(master) if cross_signing_public_key(&master).is_some_and(|(_, public_key)| public_key == key_id) => master,
                // Another server's user's master key, as the signer's client got it from their
                // server: the signature is only ever shown to the signer.
                None if remote_target
                    && object["user_id"] == target.as_str()
                    && cross_signing_public_key(object).is_some_and(|(_, public_key)| public_key == key_id) =>
                {
                    object.clone()
                }
                _ => return Ok(Err(("M_NOT_FOUND".to_owned(), format!("{target} has no key {key_id}")))),
            }
        };
        if signed_part(&stored) != signed_part(object) {
            return invalid("The signed object is not the stored key");
        }
        let signing_keys = self.signing_keys_for(signer, target, key_id)?;
        let verified: Vec<(String, Value)> = object["signatures"][signer.as_str()]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(signer_key, _)| {
                signing_keys
                    .iter()
                    .any(|(id, public_key)| id == *signer_key && signed_by(object, signer, id, public_key))
            })
            .map(|(signer_key, signature)| (signer_key.clone(), signature.clone()))
            .collect();
        if verified.is_empty() {
            return invalid("No valid signature of the uploader's keys");
        }
        Ok(Ok(verified))
    }

    /// Adds the stored signatures over a key that `viewer` may see: those of the key's owner,
    /// and the viewer's own.
    fn merge_signatures(&self, object: &mut Value, owner: &UserId, target_key: &str, viewer: &UserId) -> Result<()> {
        let target_prefix = prefix(&[owner.as_bytes(), target_key.as_bytes()]);
        for signer in [owner, viewer] {
            let signer_prefix = [&target_prefix[..], &prefix(&[signer.as_bytes()])[..]].concat();
            for (row, signature) in self.store.scan_json::<Value>(Table::KeySignatures, &signer_prefix)? {
                let signer_key = String::from_utf8_lossy(&row[signer_prefix.len()..]).into_owned();
                if !object["signatures"].is_object() {
                    object["signatures"] = serde_json::json!({});
                }
                if !object["signatures"][signer.as_str()].is_object() {
                    object["signatures"][signer.as_str()] = serde_json::json!({});
                }
                object["signatures"][signer.as_str()][signer_key] = signature;
            }
            if owner == viewer {
                break;
            }
        }
        Ok(())
    }

    // ----- device-list changes -----

    /// Commits `batch` with a device-list change of `user` recorded at a new stream position,
    /// and wakes everyone who shares a room with them (and themselves). For a user of this
    /// server, the other servers that share a room with them hear of it: an
    /// `m.device_list_update` for a device (its stream ID following the user's last one in
    /// `prev_id`, the device's keys or `deleted`), an `m.signing_key_update` for cross-signing
    /// keys.
    pub fn commit_device_list_change(&self, rooms: &Rooms, mut batch: Batch<'_>, user: &UserId, change: KeyChange<'_>) -> Result<()> {
        self.appservices
            .queue_device_list_change(&mut batch, user, || self.audience(rooms, user))?;
        let ticket: Ticket<'_> = self.stream.begin()?;
        batch.put(
            Table::DeviceListChanges,
            &key(&[&ticket.position().to_be_bytes(), user.as_bytes()]),
            &[],
        );
        let local = user.server_name() == rooms.server_name();
        let destinations = if local {
            rooms.servers_sharing_with(user)?
        } else {
            BTreeSet::new()
        };
        let devices: Vec<(&DeviceId, Option<&Value>)> = match change {
            KeyChange::Device(device, keys) => vec![(device, Some(keys))],
            KeyChange::Deleted(devices) => devices.iter().map(|device| (&**device, None)).collect(),
            KeyChange::CrossSigning | KeyChange::Remote => Vec::new(),
        };
        if local && !devices.is_empty() {
            // One update per device, each following the one before (stream IDs unique per
            // user: the stream position, and the device's index below it).
            let mut previous = self.device_list_stream_id(user)?;
            for (index, (device, keys)) in devices.into_iter().enumerate() {
                let stream_id = ticket.position() * DEVICES_PER_CHANGE + index as u64;
                let mut content = json!({
                    "user_id": user, "device_id": device, "stream_id": stream_id,
                    "prev_id": previous.into_iter().collect::<Vec<_>>(), "deleted": keys.is_none(),
                });
                if let Some(keys) = keys {
                    content["keys"] = keys.clone();
                }
                rooms.queue_edu(
                    &mut batch,
                    &destinations,
                    &json!({ "edu_type": "m.device_list_update", "content": content }),
                )?;
                previous = Some(stream_id);
            }
            batch.put_json(Table::DeviceListStreams, user.as_bytes(), &previous);
        }
        batch.commit()?;
        ticket.complete(self.audience(rooms, user)?);
        if matches!(change, KeyChange::CrossSigning) && !destinations.is_empty() {
            let mut content = json!({ "user_id": user });
            for (field, usage) in [
                ("master_key", CrossSigningUsage::Master),
                ("self_signing_key", CrossSigningUsage::SelfSigning),
            ] {
                if let Some(key) = self.cross_signing_key(user, usage, user)? {
                    content[field] = key;
                }
            }
            rooms.send_edu(destinations, &json!({ "edu_type": "m.signing_key_update", "content": content }))?;
        } else {
            rooms.wake_outbox(destinations);
        }
        Ok(())
    }

    /// The stream ID of a local user's last device change other servers were told of (the
    /// `stream_id` of `user/devices`), if any.
    pub fn device_list_stream_id(&self, user: &UserId) -> Result<Option<u64>> {
        Ok(self.store.get_json(Table::DeviceListStreams, user.as_bytes())?)
    }

    /// The user and everyone who shares a joined room with them.
    fn audience(&self, rooms: &Rooms, user: &UserId) -> Result<Vec<OwnedUserId>> {
        let mut audience = BTreeSet::from([user.to_owned()]);
        for room_id in rooms.rooms_of_user(user, &MembershipState::Join)? {
            audience.extend(rooms.joined_members(&room_id)?);
        }
        Ok(audience.into_iter().collect())
    }

    /// The users whose keys changed after stream position `since`, up to `until`.
    fn changed_users(&self, since: u64, until: u64) -> Result<BTreeSet<OwnedUserId>> {
        let start = (since + 1).to_be_bytes();
        let mut users = BTreeSet::new();
        for (row, _) in self.store.range(Table::DeviceListChanges, &[], &start, true, usize::MAX)? {
            if row.len() < 9 || row[..8] > until.to_be_bytes()[..] {
                break;
            }
            if let Ok(user) = UserId::parse(String::from_utf8_lossy(&row[9..]).as_ref()) {
                users.insert(user);
            }
        }
        Ok(users)
    }

    /// What `viewer` should hear of device lists between two stream positions: users whose
    /// keys changed and who share a room with the viewer now, users who newly share one (they
    /// or the viewer joined), and users who no longer share any.
    pub fn device_list_updates(&self, rooms: &Rooms, viewer: &UserId, since: u64, until: u64) -> Result<DeviceListUpdates> {
        let mut updates = DeviceListUpdates::default();
        let key_changes = self.changed_users(since, until)?;
        let member_changes = rooms.member_changes(since, until)?;
        if key_changes.is_empty() && member_changes.is_empty() {
            return Ok(updates);
        }
        let my_rooms: BTreeSet<OwnedRoomId> = rooms.rooms_of_user(viewer, &MembershipState::Join)?.into_iter().collect();
        let mut sharing: HashMap<OwnedUserId, bool> = HashMap::new();
        let mut shares = |user: &UserId| -> Result<bool> {
            if user == viewer {
                return Ok(true);
            }
            if let Some(known) = sharing.get(user) {
                return Ok(*known);
            }
            let shared = rooms
                .rooms_of_user(user, &MembershipState::Join)?
                .iter()
                .any(|room| my_rooms.contains(room));
            sharing.insert(user.to_owned(), shared);
            Ok(shared)
        };
        for user in key_changes {
            if shares(&user)? {
                updates.changed.insert(user);
            }
        }
        for (room_id, user, membership) in member_changes {
            let joined = match membership {
                MembershipState::Join => true,
                MembershipState::Leave | MembershipState::Ban => false,
                _ => continue,
            };
            if user == viewer {
                for (member, membership) in rooms.members(&room_id)?.iter() {
                    if member != viewer && *membership == MembershipState::Join {
                        if joined {
                            updates.changed.insert(member.clone());
                        } else {
                            updates.left.insert(member.clone());
                        }
                    }
                }
            } else if my_rooms.contains(&room_id) {
                if joined {
                    updates.changed.insert(user);
                } else {
                    updates.left.insert(user);
                }
            }
        }
        // What holds now decides: a user who joined and left again, or left one room but
        // still shares another, ends up on one side only.
        let candidates: Vec<OwnedUserId> = updates.changed.iter().chain(&updates.left).cloned().collect();
        for user in candidates {
            if shares(&user)? {
                updates.left.remove(&user);
            } else {
                updates.changed.remove(&user);
                if user != viewer {
                    updates.left.insert(user);
                }
            }
        }
        Ok(updates)
    }
}

/// Device keys as `keys/query` shows them: with the device's display name, if it has one, in
/// `unsigned`.
pub fn with_display_name(mut keys: Value, name: Option<String>) -> Value {
    if let Some(name) = name {
        keys["unsigned"] = json!({ "device_display_name": name });
    }
    keys
}

/// A local user's public keys as others see them.
pub struct LocalKeys {
    /// Each device's identity keys (with its display name), by device.
    pub devices: BTreeMap<OwnedDeviceId, Value>,
    pub master: Option<Value>,
    pub self_signing: Option<Value>,
}

impl Services {
    /// A local user's device keys (of `devices`, or all when empty) and cross-signing keys,
    /// with the signatures `viewer` may see.
    pub fn local_keys(&self, user: &UserId, devices: &[OwnedDeviceId], viewer: &UserId) -> Result<LocalKeys> {
        let names: HashMap<_, _> = self
            .devices
            .list(user)?
            .into_iter()
            .map(|device| (device.device_id, device.display_name))
            .collect();
        Ok(LocalKeys {
            devices: self.keys.device_keys(user, viewer, devices, &names)?,
            master: self.keys.cross_signing_key(user, CrossSigningUsage::Master, viewer)?,
            self_signing: self.keys.cross_signing_key(user, CrossSigningUsage::SelfSigning, viewer)?,
        })
    }
}
