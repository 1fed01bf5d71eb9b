//! Integration tests: the typed client against a real in-process hub over
//! loopback, checking what an application using the client observes.

mod support;

mod client;
