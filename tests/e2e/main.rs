//! End-to-end tests: real guests (compiled by `guest-examples/artifacts`)
//! on a real embedded cluster, and the real `prism` binary.
//!
//! Each test reads like a specification: its name states the behaviour.

// Proving the tests' futures `Send` walks deep types (the GPU stack's).
#![recursion_limit = "256"]

mod procs;
mod support;

mod actors;
mod cli;
mod cluster;
mod dashboard;
mod density;
mod events;
mod examples;
mod gpu;
mod hardening;
mod metrics;
mod modules;
mod sdk;
mod service;
mod serving;
mod tenancy;
mod webdriver;
mod workflows;
