//! Signed A/B software updates (`understudy update`, docs/operations.md).
//!
//! An update bundle is a gzip'd tar of the new version's files with a
//! manifest, signed with minisign (Ed25519) by a key the appliance trusts
//! (`bundle`). It is installed into whichever of two slots is not running,
//! the `active` link is switched to it, and the appliance restarts onto it
//! (`slots`); calls in progress are drained first, and a version that is not
//! ready in time is rolled back (`apply`).

pub mod apply;
pub mod bundle;
pub mod slots;
