//! Helpers every stage uses and none owns: atomic files and descriptor-relative paths
//! ([`fsutil`]), facts about the host ([`host`]), outgoing HTTPS ([`net`]), time formats
//! ([`timefmt`]) and the logger ([`logging`]). Nothing here knows about pods.

pub mod fsutil;
pub mod host;
pub mod logging;
pub mod net;
pub mod timefmt;
