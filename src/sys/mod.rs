//! Helpers every stage uses and none owns: the bounded pool for blocking jobs
//! ([`blocking`]), atomic files and descriptor-relative paths ([`fsutil`]), facts about the
//! host ([`host`]), mounts ([`mount`]), outgoing HTTPS ([`net`]), time formats
//! ([`timefmt`]) and the logger ([`logging`]). Nothing here knows about pods.

pub mod blocking;
pub mod fsutil;
pub mod host;
pub mod logging;
pub mod mount;
pub mod net;
pub mod timefmt;
