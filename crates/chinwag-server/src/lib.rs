//! The library half of `chinwag-server`: its configuration ([`config`]: every key, its
//! default, the layering of file, environment and flags) and its web pages ([`web`]: the
//! embedded demo, health, metrics, dev sign-in). The binary (`src/main.rs`) assembles them
//! with the `chinwag` facade. Public so the server's tests and `docs/server.md` check can
//! read the real configuration type.

pub mod config;
pub mod web;
