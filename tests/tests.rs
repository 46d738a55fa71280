//! The integration tests, one binary (cargo's `autotests` is off): each file of tests/ is a
//! module named after it, so `cargo test --test integration -- e2e::` runs tests/e2e.rs.
//! Tests of every module run side by side (libtest's threads), so each keeps what it makes on
//! the host its own: a directory from `common::unique_dir`, a free port, a bridge and subnet
//! from `common::net`, an API server of its own.

#[path = "support/apiserver/cluster.rs"]
mod apiserver;
mod common;
#[path = "support/apiserver/gateway.rs"]
mod gateway;

mod board_configs;
mod cli;
mod cluster;
mod conformance;
mod container_logs;
mod corpus_run;
mod demo;
mod e2e;
mod exec_describe;
mod fidelity;
mod fuzz_images;
mod fuzz_layers;
mod fuzz_manifests;
mod hostile;
mod hostile_manifests;
mod image_store;
mod images;
mod kubeconfig_v1;
mod kubelet_api;
mod lifecycle;
mod lock;
mod manifests;
mod mirror;
mod monitor;
mod network;
mod network_failures;
mod pull_uplink;
mod registry;
mod reliability;
mod rollout;
mod signed;
mod status_endpoint;
mod url;
mod watch;
