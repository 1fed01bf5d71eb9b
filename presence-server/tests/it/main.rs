//! Integration tests: real hubs on loopback, driven as clients drive them.

mod support;

mod directory_api;
mod openapi;
mod presence;
mod process;
mod visibility;
