//! Integration tests: real hubs on loopback, driven as clients drive them.

mod support;

mod bad_input;
mod presence;
mod session_protocol;
