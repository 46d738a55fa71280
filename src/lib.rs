//! staticlet: the kubelet's static-pod half for edge gateways.
//!
//! The pipeline runs one way, and the module list follows it:
//! manifest sources ([`source`]) -> desired pod set ([`desired`]) -> reconciler -> runtime
//! (crun) -> observed status -> status endpoint and mirror sync ([`mirror`]). [`manifest`] turns bytes into
//! validated pods, [`image`] keeps images offline, [`config`] and [`cli`] are the front door.

pub mod agent;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod desired;
pub mod events;
pub mod fsutil;
pub mod host;
pub mod image;
pub mod kubelet_api;
pub mod logging;
pub mod manifest;
pub mod mirror;
pub mod net;
pub mod probe;
pub mod reconcile;
pub mod runtime;
pub mod source;
pub mod status;
pub mod timefmt;
