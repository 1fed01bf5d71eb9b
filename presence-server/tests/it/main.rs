//! Integration tests: real hubs on loopback, driven as clients drive them.

mod support;

mod bad_input;
mod cluster_presence;
mod directory_api;
mod openapi;
mod presence;
mod process;
mod session_protocol;
mod visibility;
