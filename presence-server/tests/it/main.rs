//! Integration tests: real hubs on loopback, driven as clients drive them.

mod support;

mod presence;
mod visibility;
