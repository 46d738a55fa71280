//! staticlet: the kubelet's static-pod half for edge gateways.
//!
//! The pipeline runs one way, and the module list follows it: manifest sources
//! ([`source`]) -> desired pod set ([`desired`]) -> reconciler ([`reconcile`], driven by the
//! pure core of the [`agent`]) -> runtime ([`runtime`], crun behind a trait, with the pod
//! network from [`network`]) -> observed status ([`status`], with the endpoint) -> mirror
//! sync ([`mirror`]), Events ([`events`]) and the kubelet API ([`kubelet_api`]).
//! [`manifest`] turns bytes into validated pods, [`image`] keeps images offline, [`sys`]
//! holds the helpers. The front door: [`cli`] parses flags, [`config`] builds the
//! configuration, [`commands`] runs each subcommand, [`client`] talks to a running agent.

// The pipeline, in the order pods flow through it (blank lines keep rustfmt from sorting).
pub mod source;

pub mod desired;

pub mod reconcile;

pub mod agent;

pub mod runtime;

pub mod network;

pub mod status;

pub mod mirror;

pub mod events;

pub mod kubelet_api;

// What the stages share.
pub mod image;
pub mod manifest;
pub mod sys;

// The front door.
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
